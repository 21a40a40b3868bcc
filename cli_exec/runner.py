"""Runs a CLI as a supervised process group and yields its output as batches of events."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any

from cli_exec import _procctl
from cli_exec._pipes import Channel, PipeSet
from cli_exec._streams import StderrDecoder, StdoutDecoder
from cli_exec.events import CliEvent, EventKind
from cli_exec.redact import Redactor

# Without a pidfd (old kernels) exit is only noticed by polling.
_EXIT_POLL_S = 0.05


class StopReason(StrEnum):
    EXITED = "exited"
    RESULT = "result"
    WALL_TIMEOUT = "wall_timeout"
    IDLE_TIMEOUT = "idle_timeout"
    OUTPUT_LIMIT = "output_limit"
    REQUESTED = "requested"


@dataclass(frozen=True)
class CliCommand:
    argv: Sequence[str]
    cwd: Path
    env: Mapping[str, str]
    stdin: bytes = b""
    secrets: Sequence[str] = ()
    # For wrappers such as the sandbox: descriptors the child inherits, and whether the
    # command's own launcher arms the parent-death signal (then the runner starts it with
    # a vfork, without the pre-exec hook that would arm it).
    pass_fds: Sequence[int] = ()
    arms_death_signal: bool = False


@dataclass(frozen=True)
class RunLimits:
    wall_timeout_s: float
    idle_timeout_s: float
    max_line_bytes: int = 1_048_576
    # Of a longer line, what its raw event keeps: stored and pushed to every watcher, a
    # line cut at 16 MiB would cost far more than the head that says what it was.
    kept_line_bytes: int = 65_536
    max_output_bytes: int = 64 * 1_048_576
    result_grace_s: float = 2.0
    stop_grace_s: float = 2.0
    tick_s: float = 0.25

    def __post_init__(self) -> None:
        # A zero limit would stop every run at once; fail at configuration time instead.
        for name in (
            "wall_timeout_s",
            "idle_timeout_s",
            "max_line_bytes",
            "kept_line_bytes",
            "max_output_bytes",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"RunLimits.{name} must be positive, not {getattr(self, name)}")
        if not self.tick_s > 0:
            raise ValueError("RunLimits.tick_s must be positive")
        for name in ("result_grace_s", "stop_grace_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"RunLimits.{name} must not be negative")


@dataclass(frozen=True)
class RunOutcome:
    stop_reason: StopReason
    exit_code: int | None  # negative: killed by that signal
    result: dict[str, Any] | None  # the first result payload
    stderr_tail: str  # last ~4 KB, redacted
    stdout_lines: int
    output_bytes: int
    duration_s: float
    pid: int
    limits: RunLimits | None = None  # the limits the run had, for error sentences
    session_id: str | None = None  # from the first system line that named one


class CliRun:
    """One supervised CLI process group.

    Use as a context manager: leaving it always stops the group and reaps the child, even
    when the caller abandons `batches()` half way.
    """

    def __init__(self, command: CliCommand, limits: RunLimits) -> None:
        self._command = command
        self._limits = limits
        redactor = Redactor(command.secrets)
        line_limits = (limits.max_line_bytes, limits.kept_line_bytes)
        self._stdout = StdoutDecoder(redactor, *line_limits)
        self._stderr = StderrDecoder(redactor, *line_limits)
        # Guards the stop request, which other threads may make.
        self._lock = threading.Lock()
        self._requested: StopReason | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._pipes: PipeSet | None = None
        self._started_at = 0.0
        self._last_output_at = 0.0
        self._output_bytes = 0  # everything read
        self._kept_bytes = 0  # what was parsed: the output cap counts this
        self._over_limit = False
        self._stop_reason: StopReason | None = None
        self._escalation: list[tuple[float, signal.Signals]] = []
        self._result: dict[str, Any] | None = None
        self._result_deadline = 0.0
        self._session_id: str | None = None
        self._reaped = False
        self._drain_deadline = 0.0
        self._outcome: RunOutcome | None = None
        self._wake_at: float | None = None  # asked for by the caller (wake_by)

    # -- public API ------------------------------------------------------------------------

    def start(self) -> int:
        """Spawn the CLI; returns its pid, which is also its process group id.

        The parent-death signal is tied to the calling *thread*: call this from a thread
        that lives as long as the run (Celery's task thread does).
        """
        if self._proc is not None:
            raise RuntimeError("CliRun.start() called twice")
        command = self._command
        proc = _procctl.spawn_group(
            command.argv,
            command.cwd,
            command.env,
            pass_fds=command.pass_fds,
            arms_death_signal=command.arms_death_signal,
        )
        self._proc = proc
        self._started_at = self._last_output_at = time.monotonic()
        try:
            self._pipes = PipeSet(proc, command.stdin)
        except BaseException:
            self._kill_now()
            raise
        return proc.pid

    def batches(self) -> Iterator[list[CliEvent]]:
        """Events per wake-up; an empty list at least every tick_s while nothing arrives."""
        try:
            while (batch := self._step()) is not None:
                yield batch
        finally:
            self.close()

    # -- for a hub that supervises many runs from one thread (cli_exec.hub) -------------

    def fileno(self) -> int:
        """A descriptor that is readable whenever one of the run's pipes (or its wake-up)
        is: an epoll descriptor, which may itself be watched by another selector."""
        pipes = self._pipes
        if pipes is None:
            raise RuntimeError("call start() first")
        return pipes.fileno()

    def next_step_at(self) -> float:
        """When the run has something to do (time.monotonic()) with no pipe ready: a
        deadline, a tick, a caller's wake_by."""
        now = time.monotonic()
        return now + self._select_timeout(now)

    def step_now(self) -> list[CliEvent] | None:
        """One wake-up of the loop without waiting: the events of what is ready now
        (perhaps none); None once the run is over. batches() is the same loop, waiting."""
        return self._step(wait=False)

    def wake_by(self, when: float) -> None:
        """Have `batches()` yield (perhaps an empty list) by `when` (time.monotonic()),
        sooner than its tick: for a caller holding output it must pass on by then."""
        self._wake_at = when if self._wake_at is None else min(self._wake_at, when)

    def wake(self) -> None:
        """Have `batches()` yield (perhaps an empty list) now; thread-safe."""
        pipes = self._pipes
        if pipes is not None:
            pipes.wake()

    def request_stop(self, reason: StopReason = StopReason.REQUESTED) -> None:
        """Ask for the stop escalation; thread-safe, and only the first reason counts."""
        with self._lock:
            if self._requested is None:
                self._requested = reason
        pipes = self._pipes
        if pipes is not None:
            pipes.wake()

    @property
    def finished(self) -> bool:
        return self._outcome is not None

    @property
    def output_bytes(self) -> int:
        """Everything read from the CLI so far, past the output cap too."""
        return self._output_bytes

    @property
    def outcome(self) -> RunOutcome:
        if self._outcome is None:
            raise RuntimeError("the run has not finished; exhaust batches() first")
        return self._outcome

    def close(self) -> None:
        """Stop the group (gracefully, then by force) and reap the child; idempotent."""
        if self._proc is None or self._outcome is not None:
            return
        try:
            self.request_stop(StopReason.REQUESTED)
            while self._step() is not None:
                pass
        finally:
            if self._outcome is None:
                self._kill_now()

    def __enter__(self) -> CliRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the loop --------------------------------------------------------------------------

    def _step(self, *, wait: bool = True) -> list[CliEvent] | None:
        """One wake-up of the supervision loop; None once the run is over."""
        if self._outcome is not None:
            return None
        pipes = self._pipes
        if pipes is None:
            raise RuntimeError("call start() before batches()")
        self._apply_stop_request(time.monotonic())
        ready = pipes.wait(self._select_timeout(time.monotonic()) if wait else 0.0)
        if self._wake_at is not None and time.monotonic() >= self._wake_at:
            self._wake_at = None
        if Channel.STDIN in ready:
            pipes.write_stdin()
        if Channel.WAKE in ready:
            pipes.drain_wake()
        out = pipes.read(Channel.STDOUT) if Channel.STDOUT in ready else b""
        # stderr is read after stdout and fed before it: whatever the CLI wrote to stderr
        # before the stdout bytes in hand is then never mistaken for "after the result".
        err = pipes.read(Channel.STDERR) if out or Channel.STDERR in ready else b""
        events = self._feed(self._stderr, err) + self._feed(self._stdout, out)
        now = time.monotonic()
        self._apply_stop_request(now)
        self._reap_if_exited(now)
        self._check_deadlines(now)
        pipes_open = pipes.is_open(Channel.STDOUT) or pipes.is_open(Channel.STDERR)
        if self._reaped and (not pipes_open or now >= self._drain_deadline):
            events.extend(self._finish(now, flush=not self._over_limit))
        return events

    def _select_timeout(self, now: float) -> float:
        deadlines = [now + self._limits.tick_s]
        if self._wake_at is not None:
            deadlines.append(self._wake_at)
        if self._reaped:
            deadlines.append(self._drain_deadline)
        elif self._stop_reason is None:
            if self._result is not None:
                deadlines.append(self._result_deadline)
            else:
                deadlines.append(self._started_at + self._limits.wall_timeout_s)
                deadlines.append(self._last_output_at + self._limits.idle_timeout_s)
        if self._escalation:
            deadlines.append(self._escalation[0][0])
        if not self._reaped and self._pipes and not self._pipes.is_open(Channel.EXIT):
            deadlines.append(now + _EXIT_POLL_S)
        return max(0.0, min(deadlines) - now)

    def _feed(self, decoder: StdoutDecoder | StderrDecoder, data: bytes) -> list[CliEvent]:
        if not data:
            return []
        self._last_output_at = time.monotonic()
        self._output_bytes += len(data)
        if self._over_limit:
            return []  # past the cap the pipes are still drained, so the child never blocks
        allowed = self._limits.max_output_bytes - self._kept_bytes
        if len(data) > allowed:
            data = data[:allowed]
            self._over_limit = True
            self._begin_stop(StopReason.OUTPUT_LIMIT, self._last_output_at)
        self._kept_bytes += len(data)
        return self._admit(decoder.feed(data))

    def _admit(self, events: list[CliEvent]) -> list[CliEvent]:
        """Drop everything after the first result: it is final even if the CLI lingers."""
        if self._result is not None:
            return []
        for index, event in enumerate(events):
            if event.kind is EventKind.RESULT:
                self._result = event.payload
                self._result_deadline = time.monotonic() + self._limits.result_grace_s
                return events[: index + 1]
            if event.kind is EventKind.SYSTEM and self._session_id is None:
                session_id = event.payload.get("session_id")
                if isinstance(session_id, str):
                    self._session_id = session_id
        return events

    # -- stopping and reaping --------------------------------------------------------------

    def _apply_stop_request(self, now: float) -> None:
        with self._lock:
            requested = self._requested
        if requested is not None:
            self._begin_stop(requested, now)

    def _begin_stop(self, reason: StopReason, now: float) -> None:
        if self._stop_reason is not None or self._reaped:
            return
        self._stop_reason = reason
        grace = self._limits.stop_grace_s
        self._escalation = [(now + grace, signal.SIGTERM), (now + 2 * grace, signal.SIGKILL)]
        self._signal_group(signal.SIGINT)

    def _check_deadlines(self, now: float) -> None:
        if self._reaped:
            return
        if self._stop_reason is None:
            if self._result is not None:
                if now >= self._result_deadline:
                    self._begin_stop(StopReason.RESULT, now)
            elif now >= self._started_at + self._limits.wall_timeout_s:
                self._begin_stop(StopReason.WALL_TIMEOUT, now)
            elif now >= self._last_output_at + self._limits.idle_timeout_s:
                self._begin_stop(StopReason.IDLE_TIMEOUT, now)
        while self._escalation and now >= self._escalation[0][0]:
            self._signal_group(self._escalation.pop(0)[1])

    def _signal_group(self, sig: signal.Signals) -> None:
        if self._proc is not None and not self._reaped:
            _procctl.signal_group(self._proc.pid, sig)

    def _reap_if_exited(self, now: float) -> None:
        if self._reaped or self._proc is None or not _procctl.has_exited(self._proc.pid):
            return
        # The zombie leader still pins the group id, so this cannot hit a stranger; it
        # takes down helpers the CLI left behind, whatever signals they ignore.
        _procctl.signal_group(self._proc.pid, signal.SIGKILL)
        self._proc.wait()
        self._reaped = True
        self._escalation = []
        if self._pipes is not None:
            self._pipes.close(Channel.EXIT)
        # Survivors outside the group may still hold the pipes; read them only briefly.
        self._drain_deadline = now + self._limits.stop_grace_s

    def _kill_now(self) -> None:
        """Last resort when the loop itself failed: no grace, but still no zombie."""
        if self._proc is not None and not self._reaped:
            _procctl.signal_group(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
            self._reaped = True
        self._finish(time.monotonic(), flush=False)

    def _finish(self, now: float, *, flush: bool) -> list[CliEvent]:
        events: list[CliEvent] = []
        if flush:
            events = self._admit(self._stdout.finish()) + self._admit(self._stderr.finish())
        if self._pipes is not None:
            self._pipes.close_all()
        proc = self._proc
        for file in (proc.stdin, proc.stdout, proc.stderr) if proc is not None else ():
            if file is not None:
                file.close()  # idempotent; covers a start() that failed half way
        self._outcome = RunOutcome(
            stop_reason=self._stop_reason or StopReason.EXITED,
            exit_code=proc.returncode if proc is not None else None,
            result=self._result,
            stderr_tail=self._stderr.tail,
            stdout_lines=self._stdout.lines,
            output_bytes=self._output_bytes,
            duration_s=now - self._started_at,
            pid=proc.pid if proc is not None else 0,
            limits=self._limits,
            session_id=self._session_id,
        )
        return events
