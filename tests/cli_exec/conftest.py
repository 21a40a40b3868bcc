"""Helpers for the cli_exec tests: fake CLIs, runs collected to the end, bounded polls."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cli_exec.events import CliEvent, EventKind
from cli_exec.runner import CliCommand, CliRun, RunLimits, RunOutcome
from cli_exec.sandbox.network import SandboxNetwork

FAKE_CLIS = Path(__file__).parent / "fake_clis"

# Short grace periods keep the stop tests quick; the wall and idle limits are a safety net.
FAST = RunLimits(
    wall_timeout_s=30, idle_timeout_s=30, result_grace_s=0.3, stop_grace_s=0.3, tick_s=0.05
)


def fake_argv(name: str, *args: str) -> list[str]:
    return [sys.executable, str(FAKE_CLIS / f"{name}.py"), *args]


@dataclass
class Collected:
    batches: list[list[CliEvent]]
    outcome: RunOutcome
    events: list[CliEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.events = [event for batch in self.batches for event in batch]

    def of(self, kind: EventKind) -> list[CliEvent]:
        return [event for event in self.events if event.kind is kind]


def collect(
    command: CliCommand,
    limits: RunLimits = FAST,
    on_batch: Callable[[CliRun, list[CliEvent]], None] | None = None,
) -> Collected:
    """Run to the end, calling on_batch between batches as a worker would."""
    batches: list[list[CliEvent]] = []
    with CliRun(command, limits) as run:
        run.start()
        for batch in run.batches():
            batches.append(batch)
            if on_batch is not None:
                on_batch(run, batch)
    return Collected(batches, run.outcome)


def stop_when_ready(run: CliRun, batch: list[CliEvent]) -> None:
    if any(event.payload.get("subtype") == "ready" for event in batch):
        run.request_stop()


def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Bounded poll: True as soon as predicate holds, False if it never did."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def process_is_dead(pid: int) -> bool:
    """Gone, or a zombie (dead; only its new parent, init, can reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    # The command name may hold spaces and parentheses; the state follows the last ")".
    return stat[stat.rindex(")") + 2] in "ZX"


def assert_dies(pid: int) -> None:
    """The process must die soon; if it does not, kill it so a failing test leaks nothing."""
    try:
        assert wait_until(lambda: process_is_dead(pid)), f"process {pid} is still alive"
    finally:
        if not process_is_dead(pid):
            os.kill(pid, signal.SIGKILL)


def read_pid(path: Path) -> int:
    assert wait_until(path.exists), f"{path} never appeared"
    return int(path.read_text())


def assert_outlived_by_nothing(supervisor_argv: Sequence[str], pid_file: Path) -> None:
    """Start a supervisor that starts a process writing its pid to `pid_file`, kill the
    supervisor once that process runs: the process must die with it."""
    supervisor = subprocess.Popen(list(supervisor_argv))  # noqa: S603 - the test's own argv
    try:
        pid = read_pid(pid_file)
    finally:
        supervisor.kill()
        supervisor.wait()
    assert_dies(pid)


@pytest.fixture
def command_in(tmp_path: Path) -> Callable[..., CliCommand]:
    """Build a CliCommand for a fake CLI, run in tmp_path with an empty environment."""

    def build(
        argv: Sequence[str],
        *,
        stdin: bytes = b"",
        env: dict[str, str] | None = None,
        secrets: Sequence[str] = (),
    ) -> CliCommand:
        return CliCommand(argv=argv, cwd=tmp_path, env=env or {}, stdin=stdin, secrets=secrets)

    return build


@pytest.fixture
def network() -> Iterator[SandboxNetwork]:
    network = SandboxNetwork()
    try:
        yield network
    finally:
        network.close()


@pytest.fixture
def run_dir() -> Iterator[Path]:
    # AF_UNIX paths are limited to 108 bytes; pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="sandbox-net-"))
    try:
        yield path
    finally:
        shutil.rmtree(path)
