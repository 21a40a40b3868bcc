"""A machine's bare mirror of a remote repository: the only place the worker's git talks
to the remote with credentials, and where workspaces borrow their objects from.

Refreshed under an exclusive lock (concurrent tasks of one repository share it), never
garbage-collected (the workspaces' alternates point into it) and never written by
anything but the worker.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from gitops.command import Git, GitAuth

LOCK_NAME = "agentsite.lock"


@contextlib.contextmanager
def locked(mirror: Path) -> Iterator[None]:
    """Exclusive use of the mirror, across the processes of this machine."""
    mirror.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(mirror.parent / f"{mirror.name}.{LOCK_NAME}", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def ensure(git: Git, mirror: Path) -> None:
    """A bare repository at `mirror` (call under the lock)."""
    if (mirror / "HEAD").exists():
        return
    mirror.mkdir(parents=True, exist_ok=True)
    git("init", "-q", "--bare", ".", cwd=mirror)
    git("config", "gc.auto", "0", cwd=mirror)


def refresh(git: Git, mirror: Path, url: str, auth: GitAuth | None, refs: dict[str, str]) -> None:
    """Fetch `{remote ref pattern: mirror ref pattern}` from the remote (under the lock).
    Branches are force-updated; nothing is pruned, so no workspace loses an object."""
    specs = [f"+{src}:{dst}" for src, dst in refs.items()]
    # No automatic maintenance: gc.auto is off here, and it would cost a process per fetch.
    git("fetch", "-q", "--no-tags", "--no-write-fetch-head", "--no-auto-maintenance", url, *specs,
        cwd=mirror, auth=auth)  # fmt: skip


def refs(git: Git, mirror: Path) -> dict[str, str]:
    """Every ref of the mirror → its sha. (A workspace borrowing the mirror's objects
    needs only these: it never fetches from the mirror.)"""
    out = git("for-each-ref", "--format=%(refname) %(objectname)", cwd=mirror)
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def remote_branch(
    git: Git, mirror: Path, url: str, auth: GitAuth | None, branch: str
) -> str | None:
    """The remote's tip of `branch`, straight from the remote (None when it has none)."""
    out = git("ls-remote", "--heads", url, f"refs/heads/{branch}", cwd=mirror, auth=auth)
    for line in out.splitlines():
        sha, _, ref = line.partition("\t")
        if ref == f"refs/heads/{branch}":
            return sha
    return None


def import_bundle(git: Git, mirror: Path, bundle: Path, ref: str, into: str) -> str:
    """Take `ref` of a bundle (written by a workspace) into `into`; returns its sha. The
    bundle is data: git checks its objects and its prerequisites against the mirror."""
    git("bundle", "verify", "-q", str(bundle), cwd=mirror)
    git(
        "fetch",
        "-q",
        "--no-tags",
        "--no-write-fetch-head",
        str(bundle),
        f"+{ref}:{into}",
        cwd=mirror,
    )
    return git("rev-parse", "--verify", into, cwd=mirror).strip()


def push(git: Git, mirror: Path, url: str, auth: GitAuth | None, sha: str, branch: str) -> None:
    """Push `sha` to the remote's `branch`, never forcing; GitError(REJECTED) when the
    remote moved on meanwhile."""
    git("push", "-q", "--porcelain", url, f"{sha}:refs/heads/{branch}", cwd=mirror, auth=auth)
