"""Which workspaces on this machine stand exactly as the worker last committed them.

Once the worker has committed a successful attempt's work, nothing of the agent runs in
that workspace until the session's next attempt, so the next task may start there
without a checkout (its build outputs and ignored files kept, as a developer's own
working copy keeps them). The record lives under the workspace root, where no sandbox
sees it, and is taken away before every attempt: an attempt killed midway leaves none,
and whatever follows it checks out the last pushed or saved commit afresh.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from django.conf import settings

CLEAN_DIR = ".clean"


def _record(workspace: Path) -> Path:
    return Path(settings.AGENT_WORKSPACE_ROOT) / CLEAN_DIR / workspace.name


def mark(workspace: Path, branch: str, head: str) -> None:
    """The workspace is on `branch` at `head`, with nothing uncommitted."""
    record = _record(workspace)
    record.parent.mkdir(mode=0o700, exist_ok=True)
    partial = record.with_suffix(".partial")
    partial.write_text(f"{branch}\n{head}\n")
    os.replace(partial, record)


def take(workspace: Path) -> tuple[str, str] | None:
    """(branch, head) as last marked, removing the mark; None when there is none."""
    record = _record(workspace)
    try:
        text = record.read_text()
    except FileNotFoundError:
        return None
    with contextlib.suppress(FileNotFoundError):
        record.unlink()
    branch, _, head = text.strip().partition("\n")
    return (branch, head) if branch and head else None
