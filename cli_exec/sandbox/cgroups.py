"""Per-run resource limits through cgroups: a process limit, a memory limit and the
agents' CPU weight.

cgroup v1 (a hierarchy per controller, as on this kind of machine) and v2 (one unified
tree) are both handled; whichever is mounted and writable is used, and `describe()` says
which limits hold so that readiness can report them. The run's first process joins its
groups between fork and exec, so nothing the agent starts is ever outside them.

The CPU weight is shared: every run's CPU group sits in one group of all agents
(AGENTS_GROUP), weighted against the service's own processes, so that agents busy at
once cannot take the cores from the worker that streams their lines or from the web
process that serves them. Outside a CPU group each sandbox (a session of its own) is an
autogroup of its own, as heavy as the whole worker. The weight only matters when the
cores are contended: agents still use every idle cycle.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
_PREFIX = "agentsite-"
# Not under _PREFIX: the sweep of stale run groups must never race a run starting in it.
AGENTS_GROUP = "agentsite.agents"
# cgroup v2's cpu.weight of an ordinary group, and v1's cpu.shares for the same.
DEFAULT_CPU_WEIGHT = 100
V1_SHARES_PER_WEIGHT = 1024 / DEFAULT_CPU_WEIGHT
# A run's groups left behind (its worker was killed) are removed once this old and empty.
STALE_AFTER_S = 60.0


@dataclass(frozen=True)
class ResourceLimits:
    pids_max: int | None  # processes and threads together, as the kernel counts them
    memory_bytes: int | None
    # All runs together against one of the service's processes (cgroup v2's scale: 100
    # weighs as much); None: runs compete as any other process does.
    cpu_weight: int | None = None


NO_LIMITS = ResourceLimits(None, None)


@dataclass(frozen=True)
class LimitSupport:
    """Which limits this machine can enforce, and how; `reason` when one cannot."""

    pids: str | None  # "cgroup v1", "cgroup v2" or None
    memory: str | None
    reason: str = ""
    cpu: str | None = None

    def describe(self, limits: ResourceLimits) -> str:
        parts = []
        if limits.pids_max is not None:
            parts.append(f"pids {limits.pids_max} ({self.pids})" if self.pids else "pids: none")
        if limits.memory_bytes is not None:
            mib = limits.memory_bytes // 1_048_576
            parts.append(f"memory {mib} MiB ({self.memory})" if self.memory else "memory: none")
        if limits.cpu_weight is not None:
            weight = limits.cpu_weight
            parts.append(f"agents' cpu weight {weight} ({self.cpu})" if self.cpu else "cpu: none")
        text = ", ".join(parts) or "no limits configured"
        return f"{text}; {self.reason}" if self.reason else text


def _own_v1_path(controller: str) -> Path | None:
    """This process's group in a v1 hierarchy, from /proc/self/cgroup."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return CGROUP_ROOT / controller / path.lstrip("/")
    return None


def _own_v1_base(controller: str) -> Path:
    """This process's group in the v1 hierarchy detect() found writable."""
    own = _own_v1_path(controller)
    assert own is not None  # noqa: S101 - detect() said it exists
    return own


def _own_v2_path() -> Path | None:
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            return CGROUP_ROOT / line[3:].lstrip("/")
    return None


def _writable_dir(path: Path | None) -> bool:
    return path is not None and path.is_dir() and os.access(path, os.W_OK)


def _v2_delegated_base() -> Path | None:
    """A v2 group whose children may use pids and memory: the tree must be unified and
    our parent must hand both controllers down (the "no internal processes" rule means a
    busy group cannot enable them for children of its own)."""
    if not (CGROUP_ROOT / "cgroup.controllers").exists():
        return None
    own = _own_v2_path()
    if own is None or not _writable_dir(own):
        return None
    try:
        enabled = (own / "cgroup.subtree_control").read_text().split()
    except OSError:
        return None
    return own if {"pids", "memory"} <= set(enabled) else None


def _v2_delegates_cpu(base: Path) -> bool:
    try:
        return "cpu" in (base / "cgroup.subtree_control").read_text().split()
    except OSError:
        return False


def detect() -> LimitSupport:
    v2 = _v2_delegated_base()
    if v2 is not None:
        cpu_ok = _v2_delegates_cpu(v2)
        return LimitSupport(
            pids="cgroup v2",
            memory="cgroup v2",
            cpu="cgroup v2" if cpu_ok else None,
            reason="" if cpu_ok else "cgroup v2 cpu not delegated to the worker",
        )
    pids_ok = _writable_dir(_own_v1_path("pids"))
    memory_ok = _writable_dir(_own_v1_path("memory"))
    cpu_ok = _writable_dir(_own_v1_path("cpu"))
    found = (("pids", pids_ok), ("memory", memory_ok), ("cpu", cpu_ok))
    missing = [name for name, ok in found if not ok]
    reason = f"cgroup {', '.join(missing)} not writable by the worker" if missing else ""
    return LimitSupport(
        pids="cgroup v1" if pids_ok else None,
        memory="cgroup v1" if memory_ok else None,
        reason=reason,
        cpu="cgroup v1" if cpu_ok else None,
    )


def _agents_group(base: Path, weight: int, version: int) -> Path:
    """The group of all agents' runs under `base`, made if missing, weighted `weight`
    (written at every run: a changed setting holds from the next run on)."""
    group = base / AGENTS_GROUP
    group.mkdir(exist_ok=True)
    if version == 2:
        # Its runs' groups need the controllers handed down ("no internal processes":
        # this group never holds one itself).
        (group / "cgroup.subtree_control").write_text("+cpu +pids +memory")
        (group / "cpu.weight").write_text(str(weight))
    else:
        shares = max(2, round(weight * V1_SHARES_PER_WEIGHT))  # v1's smallest is 2
        (group / "cpu.shares").write_text(str(shares))
    return group


@dataclass
class RunGroups:
    """The cgroups of one run: created before it starts, removed after it ends."""

    limits: ResourceLimits
    paths: list[Path] = field(default_factory=list)
    pids_dir: Path | None = None
    memory_dir: Path | None = None
    version: int = 1
    _procs_files: list[str] = field(default_factory=list)
    # The event counters limit_hit reads, opened at its first call and kept open: it is
    # asked about once a second of every run, and a pread costs a tenth of an open, read
    # and close.
    _counters: list[_LimitCounter] | None = None

    @classmethod
    def create(cls, name: str, limits: ResourceLimits, support: LimitSupport) -> RunGroups:
        sweep_stale(support)
        groups = cls(limits)
        try:
            if support.pids == "cgroup v2":
                groups._create_v2(name, support)
            else:
                groups._create_v1(name, support)
        except OSError:
            groups.remove()
            raise
        return groups

    def _make_group(self, parent: Path, name: str) -> Path:
        """The run's group under `parent`: made, removed with the run, joined by the
        run's first process."""
        group = parent / f"{_PREFIX}{name}"
        group.mkdir()
        self.paths.append(group)
        self._procs_files.append(str(group / "cgroup.procs"))
        return group

    def _create_v2(self, name: str, support: LimitSupport) -> None:
        base = _v2_delegated_base()
        assert base is not None  # noqa: S101 - detect() said it exists
        if self.limits.cpu_weight is not None and support.cpu:
            base = _agents_group(base, self.limits.cpu_weight, version=2)
        group = self._make_group(base, name)
        self.version = 2
        self.pids_dir = self.memory_dir = group
        if self.limits.pids_max is not None:
            (group / "pids.max").write_text(str(self.limits.pids_max))
        if self.limits.memory_bytes is not None:
            (group / "memory.max").write_text(str(self.limits.memory_bytes))
            # Swap would turn a memory hog into a machine-wide slowdown instead of a kill.
            with contextlib.suppress(FileNotFoundError):
                (group / "memory.swap.max").write_text("0")

    def _create_v1(self, name: str, support: LimitSupport) -> None:
        if self.limits.pids_max is not None and support.pids:
            group = self._make_group(_own_v1_base("pids"), name)
            self.pids_dir = group
            (group / "pids.max").write_text(str(self.limits.pids_max))
        if self.limits.memory_bytes is not None and support.memory:
            group = self._make_group(_own_v1_base("memory"), name)
            self.memory_dir = group
            (group / "memory.limit_in_bytes").write_text(str(self.limits.memory_bytes))
            with contextlib.suppress(OSError):
                (group / "memory.memsw.limit_in_bytes").write_text(str(self.limits.memory_bytes))
        if self.limits.cpu_weight is not None and support.cpu:
            agents = _agents_group(_own_v1_base("cpu"), self.limits.cpu_weight, version=1)
            # A group per run under it: runs share the agents' weight evenly, however
            # many processes each one starts.
            self._make_group(agents, name)

    @property
    def procs_files(self) -> tuple[str, ...]:
        """The cgroup.procs files a run's first process writes its pid to, to join."""
        return tuple(self._procs_files)

    def limit_hit(self) -> str | None:
        """A sentence naming the limit the run ran into, or None."""
        if self._counters is None:
            self._counters = self._open_counters()
        for counter in self._counters:
            if counter.count() > 0:
                return counter.limit
        return None

    def _open_counters(self) -> list[_LimitCounter]:
        wanted: list[tuple[Path, bytes, str]] = []
        if self.pids_dir is not None and self.limits.pids_max is not None:
            limit = f"the sandbox's process limit ({self.limits.pids_max} processes)"
            wanted.append((self.pids_dir / "pids.events", b"max", limit))
        if self.memory_dir is not None and self.limits.memory_bytes is not None:
            events = "memory.events" if self.version == 2 else "memory.oom_control"
            limit = f"the sandbox's memory limit ({self.limits.memory_bytes // 1_048_576} MiB)"
            wanted.append((self.memory_dir / events, b"oom_kill", limit))
        counters = []
        for path, key, limit in wanted:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue  # the group is gone: nothing in it can hit a limit any more
            counters.append(_LimitCounter(fd, key, limit))
        return counters

    def _close_counters(self) -> None:
        for counter in self._counters or ():
            os.close(counter.fd)
        self._counters = []

    def remove(self, timeout_s: float = 5.0) -> None:
        """Kill whatever is still in the groups, wait for them to empty, remove them.

        Once the run's first process is reaped its PID namespace is gone, but the kernel
        may still be tearing it down (a SIGKILLed sandbox); a group is removable only once
        empty, so this polls, boundedly.
        """
        self._close_counters()
        deadline = time.monotonic() + timeout_s
        for path in reversed(self.paths):
            while True:
                _kill_members(path)
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
        self.paths.clear()


def sweep_stale(support: LimitSupport) -> int:
    """Remove empty run groups left by a worker that was killed before it could remove
    them. Only old ones: a new group is empty until its run's first process joins it;
    one still in use is never empty, and rmdir refuses it."""
    if support.pids == "cgroup v2":
        bases = [_v2_delegated_base()]
        cpu_base = bases[0] if support.cpu else None
    else:
        bases = [_own_v1_path("pids") if support.pids else None]
        bases.append(_own_v1_path("memory") if support.memory else None)
        cpu_base = _own_v1_path("cpu") if support.cpu else None
        bases.append(cpu_base)
    if cpu_base is not None:
        bases.append(cpu_base / AGENTS_GROUP)
    removed = 0
    cutoff = time.time() - STALE_AFTER_S
    for base in (b for b in bases if b is not None):
        with contextlib.suppress(OSError):
            for group in base.iterdir():
                if group.name.startswith(_PREFIX) and group.stat().st_mtime < cutoff:
                    with contextlib.suppress(OSError):
                        group.rmdir()
                        removed += 1
    return removed


def _kill_members(group: Path) -> None:
    try:
        pids = (group / "cgroup.procs").read_text().split()
    except OSError:
        return
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


@dataclass(frozen=True)
class _LimitCounter:
    """One of a group's event files, open, and the line that counts hits of its limit."""

    fd: int
    key: bytes
    limit: str

    def count(self) -> int:
        try:
            # At offset 0 the kernel renders the file anew: the count as of now.
            text = os.pread(self.fd, 4096, 0)
        except OSError:
            return 0
        for line in text.splitlines():
            name, _, value = line.partition(b" ")
            if name == self.key and value.strip().isdigit():
                return int(value)
        return 0
