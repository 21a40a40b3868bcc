"""Creating agent sessions and locating their workspace and CLI config directories."""

from __future__ import annotations

import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser

from tasks_app.compiled_sql import insert_all, update_matching
from tasks_app.models import AgentSession, GitHubRepository, Source


def session_create(
    *,
    owner: AbstractBaseUser,
    title: str = "",
    source: Source = Source.API,
    github_repository: GitHubRepository | None = None,
    github_number: int | None = None,
    base_branch: str = "",
) -> AgentSession:
    session = AgentSession(
        owner=owner,
        title=title.strip()[:200],
        source=source,
        github_repository=github_repository,
        github_number=github_number,
        base_branch=base_branch,
    )
    insert_all([session])
    # A random suffix keeps a reset database from reusing an old session's files.
    session.workspace = f"{session.pk}-{secrets.token_hex(6)}"
    update_matching(AgentSession, {"pk": session.pk}, {"workspace": session.workspace})
    return session


def workspace_path(session: AgentSession) -> Path:
    """The session's working directory on this machine (created on first use)."""
    path = Path(settings.AGENT_WORKSPACE_ROOT) / session.workspace
    path.mkdir(parents=True, exist_ok=True)
    return path


def cli_config_path(session: AgentSession) -> Path:
    """The CLI's own config dir for the session, kept outside the agent's workspace."""
    path = Path(settings.AGENT_WORKSPACE_ROOT) / ".cli-config" / session.workspace
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
