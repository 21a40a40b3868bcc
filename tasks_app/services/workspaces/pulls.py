"""Pull requests: a session on a pull request's thread works on its branch; a session's
first push opens one (AGENT_GITHUB_PR)."""

from __future__ import annotations

import structlog
from django.conf import settings

from tasks_app.models import AgentSession, Source, Task
from tasks_app.services.github import (
    GitHubClient,
    GitHubError,
    GitHubPermanentError,
    GitHubTransientError,
    PullRequest,
    RepositoryInfo,
)
from tasks_app.services.github_text import task_url
from tasks_app.services.workspaces.gitsetup import SUBJECT_CHARS, WorkspaceError, one_line

log = structlog.get_logger(__name__)


def fork_refusal(pull: PullRequest) -> str:
    return (
        f"This pull request comes from the fork {pull.head_repository}: the worker does not "
        "push to forks, so the changes stay in Agentsite."
    )


def resolve_thread_branch(session: AgentSession, info: RepositoryInfo) -> PullRequest | None:
    """On a pull request's thread, the session works on the pull request's own branch
    (and pushes there, no new pull request). Returns the pull request when it comes from
    a fork: its branch is fetched from the fork and never pushed."""
    if session.source != Source.GITHUB or session.github_number is None:
        return None
    if session.branch and not session.push_refused:
        return None  # decided on an earlier attempt
    try:
        with GitHubClient() as gh:
            pull = gh.pull_request(info.full_name, session.github_number)
    except GitHubPermanentError as exc:
        if exc.status == 404:
            return None  # an issue's thread, not a pull request's
        raise WorkspaceError(
            f"GitHub refused to describe the thread: {exc}", transient=False
        ) from exc
    except GitHubTransientError as exc:
        raise WorkspaceError(f"GitHub is unavailable: {exc}", transient=True) from exc
    same_repository = pull.head_repository.lower() == info.full_name.lower()
    fields = {
        "branch": pull.head_ref,
        "base_branch": pull.base_ref,
        "pull_request_number": pull.number,
        "pull_request_url": pull.html_url,
        "push_refused": "" if same_repository else fork_refusal(pull),
    }
    AgentSession.objects.filter(pk=session.pk).update(**fields)
    for name, value in fields.items():
        setattr(session, name, value)
    return None if same_repository else pull


def pull_request_title(task: Task, session: AgentSession) -> str:
    if session.source == Source.GITHUB and ": " in session.title:
        return one_line(session.title.split(": ", 1)[1], SUBJECT_CHARS)  # the title
    return one_line(task.prompt, SUBJECT_CHARS) or f"Agentsite task {task.pk}"


def open_pull_request(task: Task, session: AgentSession) -> tuple[str, str]:
    """(url, note): the session's pull request, opened on its first push; the note says
    why there is none."""
    if session.pull_request_url:
        return session.pull_request_url, ""
    if settings.AGENT_GITHUB_PR == "off" or session.github_repository is None:
        return "", ""
    refs = f"Refs #{session.github_number}\n\n" if session.github_number else ""
    body = f"{refs}Opened by Agentsite for [task #{task.pk}]({task_url(task)})."
    try:
        with GitHubClient() as gh:
            pull = gh.create_pull_request(
                session.github_repository.full_name,
                title=pull_request_title(task, session),
                head=session.branch,
                base=session.base_branch,
                body=body,
                draft=settings.AGENT_GITHUB_PR == "draft",
            )
    except GitHubError as exc:
        log.warning("pull_request_not_opened", error=str(exc))
        return "", f"The pull request could not be opened: {exc}"
    AgentSession.objects.filter(pk=session.pk).update(
        pull_request_number=pull.number, pull_request_url=pull.html_url
    )
    session.pull_request_number, session.pull_request_url = pull.number, pull.html_url
    log.info("pull_request_opened", number=pull.number)
    return pull.html_url, ""
