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


def parent_pid(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[1])


def worker_processes(pid: int) -> list[int]:
    """A Celery worker's own processes: its main process and, with prefork, its pool
    (forked, so with the same command line); not the CLIs it started."""
    own = Path(f"/proc/{pid}/cmdline").read_bytes()
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(int(c) for c in children if _cmdline(int(c)) == own)]


def _cmdline(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # exited while we looked
        return None


# The worker's own steps in a workspace: git in a sandbox of its own beside the agent's
# (which waits for it), or, in a workspace no agent has run in yet, git and the script
# that empties it (find and rm) in the worker's own group. Not an agent run.
WORKER_COMMANDS = frozenset({"bwrap", "setpriv", "sh", "git", "find", "rm"})


def _not_yet_executed(pid: int, parent: int, pid_ns: str) -> bool:
    """A child the worker has forked that has not yet exec'd its command: it already
    stands in its workspace but still runs the worker's program (a sandbox's first
    process, also an unexec'd copy of its parent, is in a namespace of its own)."""
    try:
        return _cmdline(pid) == _cmdline(parent) and os.readlink(f"/proc/{parent}/ns/pid") == pid_ns
    except OSError:  # the parent exited while we looked
        return False


def cli_groups_in(root: Path, *, agents_only: bool = False) -> dict[str, Path]:
    """Runs with a live process working under `root`, keyed by run: one per running CLI.

    The CLI starts helpers of its own (in its group, same cwd), so processes are counted
    by run: a sandboxed run is everything in one PID namespace (its bubblewrap, its first
    process and the CLI's own session), an unsandboxed one is the process group the
    runner started. `agents_only`: without the worker's own steps (its git and the like).
    """
    host_pid_ns = os.readlink("/proc/self/ns/pid")
    seen: list[tuple[int, str, Path, str]] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is None or fields[0] == "Z":
            continue
        try:
            cwd = Path(os.readlink(f"/proc/{entry}/cwd"))
            pid_ns = os.readlink(f"/proc/{entry}/ns/pid")
            command = Path(f"/proc/{entry}/comm").read_text().strip()
        except OSError:
            continue
        if cwd.is_relative_to(root) and not _not_yet_executed(int(entry), int(fields[1]), pid_ns):
            seen.append((int(fields[2]), pid_ns, cwd, command))
    # A sandbox's bubblewrap stays outside its namespace, in the group of its insides.
    sandboxed_groups = {group for group, pid_ns, _, _ in seen if pid_ns != host_pid_ns}
    runs: dict[str, Path] = {}
    commands: dict[str, set[str]] = {}
    for group, pid_ns, cwd, command in seen:
        key = pid_ns if pid_ns != host_pid_ns else f"group {group}"
        if pid_ns == host_pid_ns and group in sandboxed_groups:
            continue
        runs[key] = cwd
        commands.setdefault(key, set()).add(command.split("-", 1)[0])
    if agents_only:
        return {key: cwd for key, cwd in runs.items() if not commands[key] <= WORKER_COMMANDS}
    return runs
