"""Which repository (and base branch) a new task works on, checked when it is created."""

from __future__ import annotations

import re

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError

from tasks_app import selectors
from tasks_app.models import AgentSession, GitHubRepository
from tasks_app.services.github import GitHubClient, GitHubError, GitHubPermanentError

# What `git check-ref-format --branch` accepts, less what could read as an option.
BRANCH = re.compile(
    r"^(?!-)(?!.*\.\.)(?!.*//)(?!.*@\{)[^\s~^:?*\[\\\x00-\x1f\x7f]{1,255}(?<![./])$"
)


def check_base(repository: GitHubRepository, base: str) -> None:
    """400 when GitHub says the base branch does not exist; unknown is accepted (the
    attempt then fails naming it)."""
    if not BRANCH.match(base) or base.endswith(".lock"):
        raise ValidationError({"base": [f"{base!r} is not a branch name."]})
    try:
        with GitHubClient() as gh:
            exists = gh.branch_exists(repository.full_name, base)
    except GitHubPermanentError as exc:
        if exc.status in (401, 403, 404):
            raise ValidationError(
                {"repository": [f"{repository.full_name} is not reachable with the token: {exc}"]}
            ) from exc
        return
    except GitHubError:
        return
    if not exists:
        raise ValidationError(
            {"base": [f"The branch {base} does not exist in {repository.full_name}."]}
        )


def target_of(
    *,
    owner: AbstractBaseUser,
    session: AgentSession | None,
    repository: str | None,
    base: str | None,
) -> tuple[GitHubRepository | None, str]:
    """(repository, base branch) of a new task; ValidationError names a bad field."""
    if session is not None:
        current = session.github_repository
        if repository and (current is None or current.full_name.lower() != repository.lower()):
            works_on = current.full_name if current else "no repository"
            raise ValidationError({"repository": [f"The session works on {works_on}."]})
        if base and base != (session.base_branch or base):
            raise ValidationError({"base": [f"The session's base is {session.base_branch}."]})
        return current, session.base_branch or base or ""
    if not repository:
        if base:
            raise ValidationError({"base": ["A base branch needs a repository."]})
        return None, ""
    found = selectors.usable_repository(user=owner, full_name=repository)
    if found is None:
        raise ValidationError(
            {"repository": [f"{repository} is not a registered repository you can use."]}
        )
    if base:
        check_base(found, base)
    return found, base or ""
