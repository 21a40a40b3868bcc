"""This machine's spare checkouts (gitops.spare): one per repository, under the workspace
root where no sandbox sees it, taken by a new workspace and made again in a background
thread while the attempt runs (its git killed with the thread, the thread joined before
the attempt ends)."""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog
from django.conf import settings

from gitops import GitError
from gitops import spare as spare_lib
from tasks_app.services.workspaces.gitsetup import (
    repository_key,
    sandbox_user,
    workspace_git,
)

log = structlog.get_logger(__name__)
SPARES_DIR = ".spares"


@dataclass(frozen=True)
class SpareOrder:
    """What the repository's next spare is made of: the mirror (whose objects it
    borrows), the default branch's tip and the remote the agent sees."""

    spares: spare_lib.Spares
    mirror: Path
    start: str
    origin: str


def spares_for(full_name: str) -> spare_lib.Spares:
    root = Path(settings.AGENT_WORKSPACE_ROOT) / SPARES_DIR
    return spare_lib.Spares(root, repository_key(full_name))


@contextlib.contextmanager
def replenishing(order: SpareOrder | None) -> Iterator[None]:
    """While the block runs, the trash emptied and the next spare made."""
    if order is None:
        yield
        return
    context = contextvars.copy_context()  # the task's log fields
    thread = threading.Thread(target=context.run, args=(_replenish, order), name="agentsite-spare")
    thread.start()
    try:
        yield
    finally:
        thread.join()


def _replenish(order: SpareOrder) -> None:
    # Lowest CPU priority, for this thread and the git it starts: the spare must not slow
    # the attempt it runs beside.
    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    try:
        # Made by the git an agent's workspace gets (in a sandbox when it is on), so that the
        # index's stat data are those the agent's and the commit's git see.
        git = workspace_git([order.spares.building], [order.mirror])
        objects = order.mirror / "objects"
        spare_lib.replenish(git, order.spares, objects=objects, start=order.start,
                            origin=order.origin, user=sandbox_user())  # fmt: skip
    except (GitError, OSError) as exc:
        # A spare only saves time: without one, the next workspace is checked out instead.
        log.warning("spare_not_made", repository=order.spares.name, error=str(exc))
