"""After a successful attempt: the worker commits what the agent changed, records the
changes, and pushes the branch (opening a pull request on the first push) or, for a
session without a repository, saves the history as a bundle with the session."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import structlog
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from gitops import Changes, Git, GitError, GitErrorKind
from gitops import mirror as mirrors
from gitops import workspace as ws
from tasks_app.compiled_sql import get_by_pk, update_matching
from tasks_app.models import AgentSession, Source, Task, TaskDiff
from tasks_app.services import sandboxing
from tasks_app.services.github_text import task_url
from tasks_app.services.workspaces import clean_state, pulls
from tasks_app.services.workspaces.checkout import Checkout
from tasks_app.services.workspaces.gitsetup import (
    WorkspaceError,
    auth_for,
    author,
    commit_message,
    host_git,
    workspace_git,
)

log = structlog.get_logger(__name__)
PUSH_TRIES = 3


@dataclass(frozen=True)
class Published:
    head: str
    pushed_to: str = ""  # the branch the work went to (or "" when not pushed)
    pull_request_url: str = ""
    note: str = ""


def co_author(task: Task) -> str | None:
    """Who asked: the GitHub sender of the thread's comment, else the owner's account."""
    # Only a task a GitHub comment started has deliveries: others skip the query.
    delivery = (
        task.deliveries.exclude(payload=None).first() if task.source == Source.GITHUB else None
    )
    sender = ((delivery.payload or {}).get("sender") or {}) if delivery else {}
    if sender.get("login") and sender.get("id"):
        login = sender["login"]
        return f"{login} <{sender['id']}+{login}@users.noreply.github.com>"
    owner = get_by_pk(get_user_model(), task.owner_id)
    if owner is not None and getattr(owner, "email", ""):
        name = owner.get_full_name() or owner.get_username()
        return f"{name} <{owner.email}>"
    return None


def trailers(task: Task) -> list[str]:
    found = [f"Agentsite-Task: {task_url(task)}"]
    requester = co_author(task)
    if requester:
        found.append(f"Co-authored-by: {requester}")
    return found


def publish_attempt(task: Task, checkout: Checkout, summary_text: str) -> Published:
    """Keep the work of a successful attempt; raises WorkspaceError when it cannot."""
    # Read again: the checkout may have set its branch and head since the claim.
    session = get_by_pk(AgentSession, task.session_id, defer=AgentSession.STORED_FILES)
    assert session is not None  # noqa: S101 - a task's session outlives it
    readable = [checkout.mirror] if checkout.mirror else []
    wgit = workspace_git([checkout.workspace], readable)
    try:
        end = ws.commit_all(
            wgit,
            checkout.workspace,
            message=commit_message(task, summary_text),
            author=author(),
            trailers=trailers(task),
        )
        if end is None or end == checkout.start:
            published = Published(checkout.start)
            _record(task, Changes(checkout.start, [], "", False, []), published)
            clean_state.mark(checkout.workspace, checkout.branch, checkout.start)
            return published
        changes = ws.changes(
            wgit,
            checkout.workspace,
            start=checkout.start,
            end=end,
            max_diff_bytes=settings.AGENT_DIFF_MAX_BYTES,
        )
        if checkout.repository is None:
            published = _save_bundle(session, wgit, checkout, end)
        else:
            published = _push(task, session, wgit, checkout, end)
    except GitError as exc:
        if exc.kind is GitErrorKind.DISK_FULL:
            raise WorkspaceError(f"The workspace root is full: {exc}", transient=False) from exc
        raise WorkspaceError(f"The work could not be kept: {exc}", transient=exc.transient) from exc
    _record(task, changes, published)
    # What the workspace holds now: the branch at `end` (rebased onto someone else's
    # push: at the rebased head), everything committed.
    clean_state.mark(checkout.workspace, checkout.branch, published.head)
    return published


def _record(task: Task, changes: Changes, published: Published) -> None:
    with transaction.atomic():
        update_matching(
            Task,
            {"pk": task.pk},
            {
                "head_commit": published.head,
                "files_changed": len(changes.files),
                "insertions": changes.insertions,
                "deletions": changes.deletions,
                "changed_files": [
                    {"path": f.path, "insertions": f.insertions, "deletions": f.deletions}
                    for f in changes.files
                ],
                "commits": [list(commit) for commit in changes.commits],
                "branch": published.pushed_to or task.branch,
                "pull_request_url": published.pull_request_url,
                "workspace_note": published.note[:500],
            },
        )
        # One upsert: update_or_create would lock, look and insert under savepoints.
        TaskDiff.objects.bulk_create(
            [TaskDiff(task_id=task.pk, text=changes.diff, truncated=changes.truncated)],
            update_conflicts=True,
            unique_fields=["task"],
            update_fields=["text", "truncated"],
        )


def _save_bundle(session: AgentSession, wgit: Git, checkout: Checkout, end: str) -> Published:
    holder = Path(tempfile.mkdtemp(prefix="agentsite-save-"))
    try:
        sandboxing.own_for_sandbox(holder)
        wgit = workspace_git([checkout.workspace, holder], [])
        bundle = holder / "workspace.bundle"
        ws.bundle(wgit, checkout.workspace, bundle, ref=f"refs/heads/{checkout.branch}", since=None)
        size = bundle.stat().st_size
        if size > settings.AGENT_WORKSPACE_MAX_BYTES:
            limit = settings.AGENT_WORKSPACE_MAX_BYTES / 1_048_576
            note = (
                f"The workspace was not saved: its history is {size / 1_048_576:.1f} MiB, over "
                f"the {limit:g} MiB limit (AGENT_WORKSPACE_MAX_BYTES); a follow-up on another "
                "worker starts from the last saved state."
            )
            return Published(end, note=note)
        data = bundle.read_bytes()
    finally:
        shutil.rmtree(holder, ignore_errors=True)
    saved = {"workspace_bundle": data, "head_commit": end}
    update_matching(AgentSession, {"pk": session.pk}, saved)
    return Published(end, pushed_to="")


def _push(task: Task, session: AgentSession, wgit: Git, checkout: Checkout, end: str) -> Published:
    if session.push_refused:
        return Published(end, note=session.push_refused)
    mirror = checkout.mirror
    assert mirror is not None and checkout.clone_url is not None  # noqa: S101
    auth = auth_for(checkout.clone_url)
    sha = _export(task, wgit, checkout, checkout.branch, since=checkout.start)
    branch, note = session.branch, ""
    try:
        _push_with_retries(mirror, checkout.clone_url, auth, sha, branch)
    except GitError as exc:
        if exc.kind is not GitErrorKind.REJECTED:
            raise
        sha, branch, note = _after_rejection(task, session, wgit, checkout)
    if branch == session.branch:
        update_matching(AgentSession, {"pk": session.pk}, {"head_commit": sha})
    url, pr_note = pulls.open_pull_request(task, session)
    log.info("work_pushed", branch=branch, head=sha[:12])
    return Published(sha, branch, url, " ".join(n for n in (note, pr_note) if n))


def _export(task: Task, wgit: Git, checkout: Checkout, branch: str, *, since: str) -> str:
    """Carry the branch's new commits from the workspace into the mirror (a bundle: the
    worker's git never reads the workspace's own repository)."""
    mirror = checkout.mirror
    assert mirror is not None  # noqa: S101
    holder = Path(tempfile.mkdtemp(prefix="agentsite-out-"))
    try:
        sandboxing.own_for_sandbox(holder)
        out_git = workspace_git([checkout.workspace, holder], [mirror])
        bundle = holder / "work.bundle"
        ws.bundle(out_git, checkout.workspace, bundle, ref=f"refs/heads/{branch}", since=since)
        with mirrors.locked(mirror):
            return mirrors.import_bundle(
                host_git(),
                mirror,
                bundle,
                f"refs/heads/{branch}",
                f"refs/agentsite/tasks/{task.pk}",
            )
    finally:
        shutil.rmtree(holder, ignore_errors=True)


def _push_with_retries(mirror: Path, url: str, auth: object, sha: str, branch: str) -> None:
    for attempt in range(1, PUSH_TRIES + 1):
        try:
            with mirrors.locked(mirror):
                mirrors.push(host_git(), mirror, url, auth, sha, branch)  # type: ignore[arg-type]
            return
        except GitError as exc:
            if not exc.transient or attempt == PUSH_TRIES:
                raise
            log.warning("push_retry", attempt=attempt, error=str(exc))


def _after_rejection(
    task: Task, session: AgentSession, wgit: Git, checkout: Checkout
) -> tuple[str, str, str]:
    """Someone pushed to the branch meanwhile: rebase the agent's commits on theirs, or
    on a conflict push them to a branch of their own. Returns (sha, branch, note)."""
    mirror, url = checkout.mirror, checkout.clone_url
    assert mirror is not None and url is not None  # noqa: S101
    auth = auth_for(url)
    branch_ref = f"refs/heads/{session.branch}"
    with mirrors.locked(mirror):
        mirrors.refresh(host_git(), mirror, url, auth, {branch_ref: branch_ref})
        theirs = mirrors.refs(host_git(), mirror)[branch_ref]
    if ws.rebase_onto(wgit, checkout.workspace, theirs, author()):
        sha = _export(task, wgit, checkout, checkout.branch, since=checkout.start)
        _push_with_retries(mirror, url, auth, sha, session.branch)
        return sha, session.branch, "Someone pushed to the branch meanwhile: rebased on it."
    fallback = f"{session.branch}-{task.pk}"
    sha = _export(task, wgit, checkout, checkout.branch, since=checkout.start)
    _push_with_retries(mirror, url, auth, sha, fallback)
    note = (
        f"Someone pushed to {session.branch} meanwhile and the agent's changes conflict "
        f"with theirs: pushed to {fallback} instead."
    )
    return sha, fallback, note
