"""How this service runs git for a workspace: where mirrors live, which runner confines
git in a workspace, the token for a remote, the branch name, the commit's words."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings

from gitops import Author, Git, GitAuth, GitUser, HostRunner
from tasks_app.models import AgentSession, Task
from tasks_app.services import sandboxing

MIRRORS_DIR = ".mirrors"
SUBJECT_CHARS = 72
BODY_CHARS = 4000
SLUG_CHARS = 40


class WorkspaceError(Exception):
    """The workspace could not be prepared or its work kept; the message is one
    sentence for the task's error, `transient` when a retry may succeed."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


def repository_key(full_name: str) -> str:
    """ "owner/name" as one path component: how a repository's mirror and spare are named."""
    owner, _, name = full_name.partition("/")
    return f"{owner}--{name}"


def mirror_path(full_name: str) -> Path:
    return Path(settings.AGENT_WORKSPACE_ROOT) / MIRRORS_DIR / f"{repository_key(full_name)}.git"


def host_git() -> Git:
    """The worker's own git, for mirrors no agent can write."""
    return Git(HostRunner(), {"core.hooksPath": "/dev/null"})


def workspace_git(writable: list[Path], readable: list[Path]) -> Git:
    """git in a workspace the agent has had its hands on: inside a sandbox without
    network that sees only these directories, as the sandbox's user. With the sandbox
    off, as the worker itself (and as exposed as everything else then is)."""
    if not sandboxing.sandbox_on():
        return Git(HostRunner())
    from cli_exec.sandbox.isolated import IsolatedRunner

    config = sandboxing.sandbox_config()
    return Git(IsolatedRunner(config, tuple(writable), tuple(readable)))


def untouched_workspace_git() -> Git:
    """git in a workspace no agent has run in (made empty by this worker for a session
    that never ran): nothing there to distrust, so no sandbox to start; as the sandbox's
    user, whose files they become."""
    return Git(HostRunner(sandbox_user()), reflog_identity())


def reflog_identity() -> dict[str, str]:
    """Whom the worker's own git names in a workspace's reflog: AGENT_GIT_AUTHOR, never
    git's guess from this machine's user and host name (the agent reads `.git`)."""
    who = author()
    return {"user.name": who.name, "user.email": who.email}


def sandbox_user() -> GitUser | None:
    user = sandboxing.sandbox_host_user()
    return GitUser(*user) if user else None


def auth_for(clone_url: str) -> GitAuth | None:
    return GitAuth(clone_url, settings.GITHUB_TOKEN) if settings.GITHUB_TOKEN else None


def git_host(clone_url: str) -> str:
    """host:port of a clone URL, for the sandbox's egress allow-list."""
    from urllib.parse import urlsplit

    parts = urlsplit(clone_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def branch_name(session: AgentSession, text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:SLUG_CHARS].strip("-")
    return f"agentsite/{session.pk}-{slug or 'work'}"


def author() -> Author:
    return Author.parse(settings.AGENT_GIT_AUTHOR)


def one_line(text: str, limit: int) -> str:
    line = " ".join(text.strip().split("\n", 1)[0].split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def commit_message(task: Task, summary: str) -> str:
    """The agent's own summary (its first line the subject), else the prompt's first line;
    the prompt follows for the record."""
    subject = one_line(summary, SUBJECT_CHARS) or one_line(task.prompt, SUBJECT_CHARS)
    rest = summary.strip().split("\n", 1)[1].strip() if "\n" in summary.strip() else ""
    asked = task.prompt.strip()[:BODY_CHARS]
    body = "\n\n".join(part for part in (rest[:BODY_CHARS], f"Asked:\n{asked}") if part)
    return f"{subject or f'Agentsite task {task.pk}'}\n\n{body}\n"
