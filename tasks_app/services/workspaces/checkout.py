"""Before an attempt: the session's workspace is a checkout of its branch at the last
pushed (or saved) commit, whatever a killed attempt left behind."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import structlog

from gitops import GitError, GitErrorKind
from gitops import mirror as mirrors
from gitops import spare as spare_lib
from gitops import workspace as ws
from tasks_app.compiled_sql import update_matching
from tasks_app.models import AgentSession, Task
from tasks_app.services import sandboxing
from tasks_app.services.github import (
    GitHubClient,
    GitHubPermanentError,
    GitHubTransientError,
    PullRequest,
    RepositoryInfo,
)
from tasks_app.services.sessions import workspace_path
from tasks_app.services.workspaces import clean_state, pulls, scratch
from tasks_app.services.workspaces.gitsetup import (
    WorkspaceError,
    auth_for,
    branch_name,
    git_host,
    host_git,
    mirror_path,
    untouched_workspace_git,
    workspace_git,
)
from tasks_app.services.workspaces.spares import SpareOrder, spares_for

log = structlog.get_logger(__name__)
SCRATCH_BRANCH = "main"
BRANCH_REFS = {"refs/heads/*": "refs/heads/*"}


@dataclass(frozen=True)
class Checkout:
    """Where an attempt starts: its workspace on `branch` at `start`."""

    workspace: Path
    branch: str
    start: str
    repository: str | None = None  # "owner/name" for a session with one
    clone_url: str | None = None
    mirror: Path | None = None  # read-only in the sandbox: the workspace's objects

    @property
    def git_host(self) -> str | None:
        return git_host(self.clone_url) if self.clone_url else None


@dataclass
class Located:
    """A workspace whose place, remote and mirror are known and whose files are not yet
    checked out: enough to build the sandbox around it while git fills it."""

    task: Task
    workspace: Path
    fill: Callable[[], Checkout]
    mirror: Path | None = None
    clone_url: str | None = None
    spare: SpareOrder | None = None  # the repository's next spare, to make meanwhile
    checkout: Checkout | None = None  # once check_out() succeeded

    @property
    def git_host(self) -> str | None:
        return git_host(self.clone_url) if self.clone_url else None

    def check_out(self) -> Checkout:
        """The workspace on its branch at its start; raises WorkspaceError."""
        try:
            checkout = self.fill()
        except GitError as exc:
            raise _explained(exc, self.task.session) from exc
        update_matching(
            Task, {"pk": self.task.pk}, {"base_commit": checkout.start, "branch": checkout.branch}
        )
        log.info("workspace_prepared", branch=checkout.branch, start=checkout.start[:12])
        self.checkout = checkout
        return checkout


def locate_checkout(task: Task) -> Located:
    """Everything before the workspace's own files: the repository's remote and mirror
    refreshed, the branch and its start found (network, under the mirror's lock)."""
    session = task.session
    workspace = workspace_path(session)
    sandboxing.own_for_sandbox(workspace)
    # Taken before anything else: whatever happens next, this attempt may leave the
    # workspace half-written, so the next one must not trust it.
    marked = clean_state.take(workspace)
    if session.github_repository_id is None:
        return Located(task, workspace, partial(_scratch_checkout, session, workspace, marked))
    try:
        return _locate_repository(task, session, workspace, marked)
    except GitError as exc:
        raise _explained(exc, session) from exc


def _explained(exc: GitError, session: AgentSession) -> WorkspaceError:
    repo = session.github_repository.full_name if session.github_repository else None
    if exc.kind is GitErrorKind.UNSTARTED or "bwrap: " in str(exc):
        return WorkspaceError(f"The sandbox for git could not be started: {exc}", transient=True)
    if exc.kind is GitErrorKind.DISK_FULL:
        return WorkspaceError(f"The workspace root is full: {exc}", transient=False)
    if exc.kind in (GitErrorKind.NOT_FOUND, GitErrorKind.AUTH) and repo:
        return WorkspaceError(
            f"The repository {repo} could not be cloned (missing, or no access with the "
            f"worker's token): {exc}",
            transient=False,
        )
    return WorkspaceError(f"The workspace could not be prepared: {exc}", transient=exc.transient)


def _repository_info(full_name: str) -> RepositoryInfo:
    try:
        with GitHubClient() as gh:
            return gh.repository(full_name)
    except GitHubTransientError as exc:
        raise WorkspaceError(f"GitHub is unavailable: {exc}", transient=True) from exc
    except GitHubPermanentError as exc:
        raise WorkspaceError(
            f"The repository {full_name} is missing or the worker's token cannot see it: {exc}",
            transient=False,
        ) from exc


def _locate_repository(
    task: Task, session: AgentSession, workspace: Path, marked: tuple[str, str] | None
) -> Located:
    repository = session.github_repository
    assert repository is not None  # noqa: S101 - the caller checked
    info = _repository_info(repository.full_name)
    fork = pulls.resolve_thread_branch(session, info)
    if not session.branch:
        session.base_branch = session.base_branch or info.default_branch
        session.branch = branch_name(session, session.title)
        named = {"base_branch": session.base_branch, "branch": session.branch}
        update_matching(AgentSession, {"pk": session.pk}, named)
    mirror = mirror_path(repository.full_name)
    spares = spares_for(repository.full_name)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="agentsite-adopt") as aside:
        # A workspace the worker did not leave clean (new, or after a failed or killed
        # attempt) is replaced by the machine's spare: taken here, before the sandbox binds
        # the workspace's path, and put on the session's branch while the mirror refreshes.
        adopting = None
        if marked is None and spare_lib.take(spares, workspace):
            adopting = aside.submit(spare_lib.adopt, untouched_workspace_git(), workspace,
                                    branch=session.branch)  # fmt: skip
        _refresh_mirror(mirror, info, fork)
        spare_at = adopting.result() if adopting else None
    refs = _mirror_refs(mirror)
    start = _start_of(refs, session, fork)
    checkout = Checkout(
        workspace, session.branch, start, repository.full_name, info.clone_url, mirror
    )
    at_start = spare_at == start if adopting else marked == (session.branch, start)
    fill = partial(_repository_checkout, checkout, at_start=at_start)
    default_tip = refs.get(f"refs/heads/{info.default_branch}")
    order = SpareOrder(spares, mirror, default_tip, info.clone_url) if default_tip else None
    return Located(task, workspace, fill, mirror, info.clone_url, order)


def _refresh_mirror(mirror: Path, info: RepositoryInfo, fork: PullRequest | None) -> None:
    with mirrors.locked(mirror):
        git = host_git()
        mirrors.ensure(git, mirror)
        mirrors.refresh(git, mirror, info.clone_url, auth_for(info.clone_url), BRANCH_REFS)
        if fork is not None:
            # A fork's branch lives in the fork; it is fetched read-only, never pushed.
            mirrors.refresh(
                git,
                mirror,
                fork.head_clone_url,
                auth_for(fork.head_clone_url),
                {f"refs/heads/{fork.head_ref}": f"refs/forks/{fork.number}"},
            )


def _repository_checkout(checkout: Checkout, *, at_start: bool) -> Checkout:
    """The workspace at the start found (unless it stands there: as the worker committed
    it, or a spare made there); the mirror's objects are the workspace's too
    (alternates): no fetch."""
    if not at_start:
        mirror = checkout.mirror
        assert mirror is not None  # noqa: S101 - a repository's checkout has one
        wgit = workspace_git([checkout.workspace], [mirror])
        ws.check_out(wgit, checkout.workspace, objects=mirror / "objects",
                     branch=checkout.branch, start=checkout.start,
                     origin=checkout.clone_url or "")  # fmt: skip
    return checkout


def _start_of(refs: dict[str, str], session: AgentSession, fork: PullRequest | None) -> str:
    """The sha to start from: the session's branch as pushed, else its base
    (for a fork's pull request, the fork's branch as fetched)."""
    candidates = (
        [f"refs/forks/{fork.number}"]
        if fork is not None
        else [f"refs/heads/{session.branch}", f"refs/heads/{session.base_branch}"]
    )
    for ref in candidates:
        if ref in refs:
            return refs[ref]
    repo = session.github_repository.full_name if session.github_repository else "?"
    raise WorkspaceError(
        f"The base branch {session.base_branch} does not exist in {repo}.", transient=False
    )


def _mirror_refs(mirror: Path) -> dict[str, str]:
    return mirrors.refs(host_git(), mirror)


def _scratch_checkout(
    session: AgentSession, workspace: Path, marked: tuple[str, str] | None
) -> Checkout:
    """A repository-less session: its history as last saved, restored from the bundle
    when this worker lacks it; the first attempt starts from an empty first commit."""
    if session.head_commit and marked == (SCRATCH_BRANCH, session.head_commit):
        return Checkout(workspace, SCRATCH_BRANCH, session.head_commit)
    if not session.head_commit and not any(workspace.iterdir()):
        start = scratch.first_checkout(workspace, SCRATCH_BRANCH)
    else:
        wgit = workspace_git([workspace], [])
        start = ws.check_out_saved(
            wgit, workspace, saved=session.head_commit, branch=SCRATCH_BRANCH
        )
    if start is None:
        return _restore_bundle(session, workspace)
    if start != session.head_commit:  # the first attempt: its first commit is the saved one
        update_matching(AgentSession, {"pk": session.pk}, {"head_commit": start})
        session.head_commit = start
    return Checkout(workspace, SCRATCH_BRANCH, start)


def _restore_bundle(session: AgentSession, workspace: Path) -> Checkout:
    """A worker without the session's files: its history comes from the saved bundle."""
    if not session.workspace_bundle:
        raise WorkspaceError(
            "The session's saved workspace is missing; it cannot be restored here.",
            transient=False,
        )
    holder = Path(tempfile.mkdtemp(prefix="agentsite-bundle-"))
    try:
        bundle = holder / "workspace.bundle"
        bundle.write_bytes(bytes(session.workspace_bundle))
        sandboxing.own_for_sandbox(holder, bundle)
        wgit = workspace_git([workspace], [holder])
        ws.fetch(wgit, workspace, str(bundle), {f"refs/heads/{SCRATCH_BRANCH}": "refs/saved/main"})
        ws.reset_to(wgit, workspace, SCRATCH_BRANCH, session.head_commit)
    finally:
        shutil.rmtree(holder, ignore_errors=True)
    log.info("workspace_restored", head=session.head_commit[:12])
    return Checkout(workspace, SCRATCH_BRANCH, session.head_commit)
