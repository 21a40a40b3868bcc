"""Spare checkouts: one workspace per repository made ready ahead of need, so that a new
workspace (a session's first task, or a retry after a killed attempt) is a rename and
a branch, not thousands of files written while the task waits.

A spare is a checkout of the repository's default branch borrowing the mirror's objects,
made by the worker's own git in a directory no agent has seen. Taking it is atomic (a
rename: of two takers, one gets it, the other checks out as without spares); what
stood in the workspace's place goes to the repository's trash. `replenish` empties the
trash and makes the next spare; one maker per repository at a time, the others skip.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gitops import workspace as ws
from gitops.command import Git, GitUser

SPARE_BRANCH = "agentsite-spare"
MADE_AT = "agentsite-spare"  # in the spare's .git: the commit it was made at


@dataclass(frozen=True)
class Spares:
    """Where one repository's spare, its trash and its lock live (under `root`, a
    directory no sandbox sees)."""

    root: Path
    name: str  # the repository's key, e.g. "owner--name"

    @property
    def ready(self) -> Path:
        return self.root / self.name

    @property
    def trash(self) -> Path:
        return self.root / f"{self.name}.trash"

    @property
    def building(self) -> Path:
        return self.root / f"{self.name}.building"


def take(spares: Spares, workspace: Path) -> bool:
    """The spare put in `workspace`'s place (whatever stood there goes to the trash);
    False, and nothing moved, when there is no spare."""
    spares.root.mkdir(mode=0o711, parents=True, exist_ok=True)
    claimed = spares.root / f".claimed-{uuid.uuid4().hex}"
    try:
        os.rename(spares.ready, claimed)
    except FileNotFoundError:
        return False
    spares.trash.mkdir(mode=0o700, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.rename(workspace, spares.trash / uuid.uuid4().hex)
    os.rename(claimed, workspace)
    return True


def adopt(git: Git, workspace: Path, *, branch: str) -> str:
    """A taken spare on `branch` (refs only: the worker's own git may do it, the index
    and the files are not read); returns the commit it stands at. When that is not where
    the session starts (the default branch moved on since the spare was made, or the
    session starts elsewhere), a checkout by the git that will work in it
    (ws.check_out) takes it there."""
    made_at = workspace / ".git" / MADE_AT
    commit = made_at.read_text().strip()
    made_at.unlink()
    git("branch", "-q", "-M", branch, cwd=workspace)
    return commit


def replenish(
    git: Git, spares: Spares, *, objects: Path, start: str, origin: str, user: GitUser | None
) -> bool:
    """Empty the trash, then make a spare at `start` when there is none; False when
    another process is at it. `git` works in `spares.building` as `user`, who owns the
    spare's files, and sees them as the agent's git will (a sandbox's other uid is other
    stat data in the index: the first `git add` would rehash every file)."""
    with _exclusive(spares) as mine:
        if not mine:
            return False
        if spares.trash.exists():
            for entry in list(spares.trash.iterdir()):
                shutil.rmtree(entry, ignore_errors=True)
        if spares.ready.exists():
            return True
        shutil.rmtree(spares.building, ignore_errors=True)  # a killed maker's
        spares.building.mkdir(mode=0o755)
        if user is not None:
            os.chown(spares.building, user.uid, user.gid)
        ws.check_out(git, spares.building, objects=objects, branch=SPARE_BRANCH, start=start,
                     origin=origin)  # fmt: skip
        # The index rewritten once the files settled, as the agent's first `git status`
        # would: otherwise that status, or the commit after the attempt, pays for it
        # (entries written in the index's own timestamp tick are "racy": rehashed).
        git("status", "--porcelain", cwd=spares.building)
        (spares.building / ".git" / MADE_AT).write_text(f"{start}\n")
        os.rename(spares.building, spares.ready)
        return True


@contextlib.contextmanager
def _exclusive(spares: Spares) -> Iterator[bool]:
    spares.root.mkdir(mode=0o711, parents=True, exist_ok=True)
    fd = os.open(spares.root / f"{spares.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
