"""The machine and software a run measured, for the table header and results.json."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def loadavg() -> str:
    """The three load averages from /proc/loadavg, e.g. "0.52 0.61 0.70"."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


@dataclass(frozen=True)
class CpuClock:
    """The machine's CPU time so far, in clock ticks, from the first line of /proc/stat:
    all of it, and what the hypervisor gave to other guests while this one wanted to run
    ("steal"). A run with much steal measured a busy host as much as this code."""

    total: int
    steal: int

    @classmethod
    def read(cls, stat: Path = Path("/proc/stat")) -> CpuClock | None:
        try:
            fields = stat.read_text().splitlines()[0].split()
        except (OSError, IndexError):
            return None
        if fields[:1] != ["cpu"] or len(fields) < 9:
            return None
        # user nice system idle iowait irq softirq steal [guest guest_nice]: the guest
        # times are already counted in user and nice.
        ticks = [int(value) for value in fields[1:9]]
        return cls(total=sum(ticks), steal=ticks[7])


def steal_pct(before: CpuClock | None, after: CpuClock | None) -> float | None:
    """The share of the CPU time between two readings that was stolen, in percent."""
    if before is None or after is None or after.total <= before.total:
        return None
    return 100.0 * (after.steal - before.steal) / (after.total - before.total)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return float("nan")


def git_commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def describe(mode: str) -> dict[str, Any]:
    return {
        "mode": mode,
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": git_commit(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gib": memory_gib(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "loadavg_start": loadavg(),
    }
