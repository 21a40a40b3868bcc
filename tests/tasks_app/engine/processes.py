"""Reading the process table: which CLI process groups run, and in which workspace."""

from __future__ import annotations

import os
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name, or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):  # exited while we looked
        return None


def process_gone(pid: int) -> bool:
    """Gone, or a zombie nobody reaps in this sandbox (it can no longer run)."""
    fields = _stat_fields(pid)
    return fields is None or fields[0] == "Z"


def cli_groups_in(root: Path) -> dict[int, Path]:
    """Process groups with a live member working under `root`: one per running CLI.

    The CLI starts helpers of its own (in its group, same cwd), so processes are
    counted by group, as the runner starts each CLI in a new session.
    """
    groups: dict[int, Path] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is None or fields[0] == "Z":
            continue
        try:
            cwd = Path(os.readlink(f"/proc/{entry}/cwd"))
        except OSError:
            continue
        if cwd.is_relative_to(root):
            groups[int(fields[2])] = cwd
    return groups
