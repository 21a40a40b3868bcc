"""Process facts from /proc: children, CPU time, resident memory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    try:
        return [
            int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        ]
    except OSError:
        return []


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, their children, ...)."""
    found, todo = [], children(pid)
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children(child))
    return found


def _cmdline(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


def worker_processes(pid: int) -> list[int]:
    """A Celery worker's own processes: its main process and, with prefork, its pool
    (forked, so started by the same command line); never the CLIs it runs, which with
    the threads pool are the main process's own children."""
    own = _cmdline(pid)
    return [pid, *(child for child in children(pid) if _cmdline(child) == own)]


def workers_processes(pids: list[int]) -> list[int]:
    """worker_processes of each of several workers."""
    return [process for pid in pids for process in worker_processes(pid)]


@dataclass(frozen=True)
class CpuTimes:
    """CPU seconds of some processes: their own (user, system) and their exited and
    reaped descendants' (their CLIs, sandboxes and git, each level reaping the one below
    it)."""

    user: float = 0.0
    system: float = 0.0
    reaped_children: float = 0.0

    @property
    def own(self) -> float:
        return self.user + self.system


def cpu_times(pids: list[int]) -> CpuTimes:
    """CpuTimes of these processes, each /proc/<pid>/stat read once."""
    user = system = children = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])  # utime
        system += int(fields[12])  # stime
        children += int(fields[13]) + int(fields[14])  # cutime, cstime
    return CpuTimes(user / CLOCK_TICKS, system / CLOCK_TICKS, children / CLOCK_TICKS)


def machine_cpu_seconds() -> float:
    """CPU seconds every core spent busy (not idle, not waiting for I/O) since boot."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(value) for value in fields]
    idle, iowait = ticks[3], ticks[4]
    return (sum(ticks[:8]) - idle - iowait) / CLOCK_TICKS


def processes_named(*names: str) -> dict[str, list[int]]:
    """The pids of the running processes whose command name is each of `names`, from one
    pass over /proc."""
    found: dict[str, list[int]] = {name: [] for name in names}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                name = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if name in found:
                found[name].append(int(entry.name))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time of these processes (not of their children)."""
    return cpu_times(pids).own


def _kib(path: Path, field: str) -> int:
    try:
        for line in path.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory(pids: list[int]) -> dict[str, Any]:
    """RSS and PSS (shared pages counted once) in MiB summed over these processes."""
    rss = sum(_kib(Path(f"/proc/{p}/status"), "VmRSS") for p in pids)
    pss = sum(_kib(Path(f"/proc/{p}/smaps_rollup"), "Pss") for p in pids)
    return {"processes": len(pids), "rss_mib": rss / 1024, "pss_mib": pss / 1024}


class CpuMeter:
    """CPU seconds used by web, the workers (main and pool processes) and this process
    between `start()` and `stop()`; wall seconds too."""

    def __init__(self, web_pid: int, worker_pids: list[int]) -> None:
        self.web_pid = web_pid
        self.worker_pids = worker_pids
        self._start: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def _sample(self) -> dict[str, float]:
        import time

        workers = cpu_times(workers_processes(self.worker_pids))
        servers = processes_named("postgres", "redis-server")
        return {
            "wall_s": time.monotonic(),
            "web_cpu_s": cpu_seconds([self.web_pid]),
            "worker_cpu_s": workers.own,
            "worker_system_cpu_s": workers.system,
            "worker_children_cpu_s": workers.reaped_children,
            "bench_cpu_s": cpu_seconds([os.getpid()]),
            "machine_cpu_s": machine_cpu_seconds(),
            # The server's processes running now (those that exit between two samples
            # are not counted): what the statements of a run cost PostgreSQL.
            "postgres_cpu_s": cpu_seconds(servers["postgres"]),
            "redis_cpu_s": cpu_seconds(servers["redis-server"]),
        }

    def start(self) -> None:
        self._start = self._sample()

    def lap(self) -> dict[str, float]:
        """What was used since `start()`, without stopping."""
        now = self._sample()
        return {k: round(now[k] - self._start[k], 3) for k in now}

    def stop(self) -> dict[str, float]:
        self.used = self.lap()
        return self.used
