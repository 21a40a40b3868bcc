"""One thread that supervises many CLI runs, so that a busy moment costs one wake-up.

A run supervised by a thread of its own wakes that thread for every line its CLI
prints; with dozens of runs each wake-up finds the interpreter's code and data gone
from the CPU's caches, and that, not the parsing, is most of what a line costs (a
runner step took 50 µs of CPU when its lines came every 2 ms and 190-220 µs every 20-50
ms, against 1.5 µs to parse the line itself). Here one thread waits on every run's
descriptors together. While lines come quicker than BATCH_WINDOW_S it waits out the
window before it looks, and then serves every run that is ready in one warm pass; a
lone line is served at once.

The caller starts its run (the CLI's parent-death signal belongs to the thread that
spawned it, which waits here for the run's end) and hands it over with `supervise`,
which returns once the run is over. Its batches go to `on_batch`, called in the hub's
thread with the caller's context variables (structured-log bindings, trace spans).
"""

from __future__ import annotations

import contextvars
import selectors
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from cli_exec._pipes import WakePipe
from cli_exec.events import CliEvent
from cli_exec.runner import CliRun

log = structlog.get_logger(__name__)

# Lines that come closer together than this are served together; a line waits at most
# this long for its neighbours. With 50 runs, windows of 2, 5 and 10 ms each cut the
# CPU a line cost by about half; the longer ones add latency for little more.
BATCH_WINDOW_S = 0.002
# A run that takes more of the hub's CPU time than this share over a second (its steps
# and its handler's work) goes back to its caller's thread, which supervises it alone
# from then on: a CLI flooding output, or one printing a line of megabytes, would
# otherwise hold every other run's lines behind its own. An agent streaming 50 lines a
# second takes about 1 %. Waits do not count: a slow database slows every run alike.
HEAVY_SHARE = 0.05
USAGE_WINDOW_S = 1.0
# Nor may one step of it: a step that read this much at once (a pipe full of output) or
# took this much CPU hands the run back at once, before its first second is out.
BULK_READ_BYTES = 128 * 1024
HEAVY_STEP_S = 0.005
# How often a waiting caller looks up from waiting: an exception raised in its thread
# (the threads pool's time limit, which allows 60 s for it) is delivered then. Each look
# is a wake-up of an idle thread, which costs a run as much as a line does.
CALLER_POLL_S = 5.0
BatchHandler = Callable[[list[CliEvent]], None]


@dataclass(eq=False)
class _Supervised:
    run: CliRun
    on_batch: BatchHandler
    context: contextvars.Context
    fd: int
    step_at: float = 0.0
    ended: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    # Set by the caller that gives up on the run; the hub lets it go at its next pass.
    abandoned: bool = False
    handed_back: bool = False  # too heavy to share the hub: the caller serves it
    busy_s: float = 0.0  # the hub's CPU time spent on it since busy_since
    busy_since: float = -USAGE_WINDOW_S


class RunHub:
    """Supervises the runs handed to it from one thread, which it starts when the first
    run comes and which ends when the last one is over."""

    def __init__(self, batch_window_s: float = BATCH_WINDOW_S) -> None:
        self._batch_window_s = batch_window_s
        self._lock = threading.Lock()
        self._arriving: list[_Supervised] = []
        self._running = False
        self._wake_pipe = WakePipe()

    def forget_parents_thread(self) -> None:
        """In a forked child: the parent's lock may have been held at the fork, its
        thread is not here, and its wake-up pipe is the parent's."""
        self._wake_pipe.close_in_forked_child()
        self._lock = threading.Lock()
        self._arriving = []
        self._running = False
        self._wake_pipe = WakePipe()

    def supervise(self, run: CliRun, on_batch: BatchHandler) -> None:
        """Serve `run` (started) until it is over, passing its batches to `on_batch`;
        re-raises what `on_batch` or the run's step raised. A run too heavy to share the
        hub (HEAVY_SHARE, HEAVY_STEP_S, BULK_READ_BYTES) is served on in the calling
        thread. If the caller is interrupted meanwhile (an exception raised in its
        thread), the hub lets the run go first, so the caller may stop it itself."""
        supervised = _Supervised(run, on_batch, contextvars.copy_context(), run.fileno())
        with self._lock:
            if not self._running:
                threading.Thread(target=self._serve, name="cli-run-hub", daemon=True).start()
                self._running = True
            self._arriving.append(supervised)
        self._wake_pipe.wake()
        try:
            while not supervised.ended.wait(CALLER_POLL_S):
                pass
        except BaseException:
            supervised.abandoned = True
            self._wake_pipe.wake()
            supervised.ended.wait()  # the hub holds the run no more
            raise
        if supervised.error is not None:
            raise supervised.error
        if supervised.handed_back:
            log.info("cli_run_served_alone", hub_cpu_ms=round(supervised.busy_s * 1000, 1))
            for batch in run.batches():
                on_batch(batch)

    def _serve(self) -> None:
        served: set[_Supervised] = set()
        try:
            self._serve_until_idle(served)
        except BaseException as exc:
            # Unexpected: nobody may wait for ever on runs this thread no longer serves.
            with self._lock:
                served.update(self._arriving)
                self._arriving = []
                self._running = False
            for supervised in served:
                supervised.error = RuntimeError(f"the run hub failed: {exc!r}")
                supervised.ended.set()
            raise

    def _serve_until_idle(self, served: set[_Supervised]) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._wake_pipe.read_end, selectors.EVENT_READ)
        last_pass = -1.0
        try:
            while True:
                with self._lock:
                    arriving, self._arriving = self._arriving, []
                    if not arriving and not served:
                        self._running = False
                        return
                for supervised in arriving:
                    selector.register(supervised.fd, selectors.EVENT_READ, supervised)
                    served.add(supervised)
                next_at = min((s.step_at for s in served), default=time.monotonic() + 1.0)
                ready = selector.select(max(0.0, next_at - time.monotonic()))
                now = time.monotonic()
                if ready and now < last_pass + self._batch_window_s:
                    # Lines come quicker than the window: let the others catch up.
                    time.sleep(last_pass + self._batch_window_s - now)
                    ready = selector.select(0)
                    now = time.monotonic()
                last_pass = now
                due = {key.data for key, _events in ready if key.data is not None}
                if len(due) < len(ready):
                    self._wake_pipe.drain()
                due.update(s for s in served if s.step_at <= now or s.abandoned)
                for supervised in due:
                    if not self._step(supervised):
                        # Before anyone may close the run (and its descriptor's number
                        # be given to another run's).
                        served.discard(supervised)
                        selector.unregister(supervised.fd)
                        supervised.ended.set()
        finally:
            selector.close()

    def _step(self, supervised: _Supervised) -> bool:
        """One step of one run and its batch; False when the hub is done with it."""
        if supervised.abandoned:
            return False
        started = time.thread_time()
        read_before = supervised.run.output_bytes
        try:
            batch = supervised.run.step_now()
            if batch is None:
                return False
            supervised.context.run(supervised.on_batch, batch)
            if supervised.run.finished:
                return False
        except BaseException as exc:  # noqa: BLE001 - the caller re-raises it
            supervised.error = exc
            return False
        now = time.monotonic()
        if now >= supervised.busy_since + USAGE_WINDOW_S:
            supervised.busy_since, supervised.busy_s = now, 0.0
        spent = time.thread_time() - started
        supervised.busy_s += spent
        if (
            supervised.busy_s > HEAVY_SHARE * USAGE_WINDOW_S
            or spent > HEAVY_STEP_S
            or supervised.run.output_bytes - read_before >= BULK_READ_BYTES
        ):
            supervised.handed_back = True
            return False
        supervised.step_at = supervised.run.next_step_at()
        return True
