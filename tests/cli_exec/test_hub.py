"""One thread supervises many runs: every batch reaches its run's handler, in order."""

from __future__ import annotations

import contextvars
import ctypes
import threading
from dataclasses import replace

import pytest

from cli_exec.events import CliEvent, EventKind
from cli_exec.hub import RunHub
from cli_exec.runner import CliRun, StopReason
from tests.cli_exec.conftest import FAST, assert_dies, fake_argv, wait_until

CALLER = contextvars.ContextVar("CALLER", default="nobody")


class Recorder:
    """A run's handler: what it was given, and in which thread and context."""

    def __init__(self) -> None:
        self.batches: list[list[CliEvent]] = []
        self.threads: set[str] = set()
        self.callers: set[str] = set()

    def __call__(self, batch: list[CliEvent]) -> None:
        self.batches.append(batch)
        self.threads.add(threading.current_thread().name)
        self.callers.add(CALLER.get())

    def texts(self) -> list[str]:
        return [e.payload["text"] for b in self.batches for e in b if e.kind is EventKind.TEXT]


def supervise_paced(hub: RunHub, command_in, name: str, count: int, interval_ms: float):
    CALLER.set(name)
    recorder = Recorder()
    with CliRun(command_in(fake_argv("paced", str(count), str(interval_ms))), FAST) as run:
        run.start()
        hub.supervise(run, recorder)
        assert run.finished
    return recorder, run.outcome


def test_runs_handed_over_from_many_threads_each_get_all_their_lines_in_order(command_in):
    hub = RunHub()
    results: dict[str, tuple] = {}

    def caller(name: str) -> None:
        results[name] = supervise_paced(hub, command_in, name, 30, 5)

    threads = [threading.Thread(target=caller, args=(f"caller-{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results) == [f"caller-{i}" for i in range(8)]
    for name, (recorder, outcome) in results.items():
        assert "".join(recorder.texts()) == "".join(f"{i};" for i in range(30))
        assert outcome.result is not None and outcome.exit_code == 0
        # Every batch of every run was handled by the hub's one thread, in its caller's
        # context (its log bindings, its trace).
        assert recorder.threads == {"cli-run-hub"}
        assert recorder.callers == {name}


def test_lines_closer_than_the_window_are_served_together(command_in):
    hub = RunHub(batch_window_s=0.05)
    recorder, _outcome = supervise_paced(hub, command_in, "dense", 100, 1)
    assert "".join(recorder.texts()) == "".join(f"{i};" for i in range(100))
    with_text = [b for b in recorder.batches if any(e.kind is EventKind.TEXT for e in b)]
    print(f"\n100 lines 1 ms apart, a 50 ms window: {len(with_text)} batches with text")
    assert len(with_text) < 30


def test_a_run_too_heavy_to_share_the_hub_is_served_on_in_its_callers_thread(command_in):
    hub = RunHub()
    CALLER.set("flooding")
    recorder = Recorder()
    limits = replace(FAST, max_output_bytes=20 * 1_048_576)
    with CliRun(command_in(fake_argv("flood")), limits) as run:
        run.start()
        hub.supervise(run, recorder)
    # It took more than its share of the hub's time, and its own thread took over; the
    # output cap ended it there, every line until then handled in order.
    assert recorder.threads == {"cli-run-hub", threading.current_thread().name}
    assert recorder.callers == {"flooding"}
    assert run.outcome.stop_reason is StopReason.OUTPUT_LIMIT
    texts = recorder.texts()
    assert len(texts) > 10_000 and set(texts) == {"y" * 1000}


def test_a_run_that_fills_a_read_at_once_is_handed_back_at_that_step(command_in):
    hub = RunHub()
    CALLER.set("one big line")
    recorder = Recorder()
    with CliRun(command_in(fake_argv("big_line", str(600_000))), FAST) as run:
        run.start()
        hub.supervise(run, recorder)
    # The line came in reads bigger than BULK_READ_BYTES: the hub let the run go at the
    # first of them, and the job's thread read the rest and the lines after it.
    assert recorder.threads == {"cli-run-hub", threading.current_thread().name}
    assert recorder.texts() == ["y" * 600_000, "0;", "1;", "2;"]
    assert run.outcome.result is not None


def test_the_hubs_thread_ends_with_its_last_run_and_comes_back_for_the_next(command_in):
    hub = RunHub()
    supervise_paced(hub, command_in, "first", 3, 1)
    assert wait_until(lambda: not any(t.name == "cli-run-hub" for t in threading.enumerate()))
    recorder, _outcome = supervise_paced(hub, command_in, "second", 3, 1)
    assert recorder.texts() == ["0;", "1;", "2;"]


def test_what_the_handler_raises_reaches_the_caller_and_the_run_is_still_stopped(command_in):
    hub = RunHub()

    def failing(batch: list[CliEvent]) -> None:
        if any(e.kind is EventKind.TEXT for e in batch):
            raise LookupError("the handler failed")

    with pytest.raises(LookupError, match="the handler failed"):
        with CliRun(command_in(fake_argv("ticker")), FAST) as run:
            pid = run.start()
            hub.supervise(run, failing)
    assert run.finished and run.outcome.stop_reason is StopReason.REQUESTED
    assert_dies(pid)


def test_a_caller_interrupted_while_waiting_gets_its_run_back_to_stop(command_in):
    hub = RunHub()
    handled = threading.Event()
    pids: list[int] = []
    outcomes: list = []

    class Interrupted(Exception):
        pass

    def caller() -> None:
        try:
            with CliRun(command_in(fake_argv("ticker")), FAST) as run:
                pids.append(run.start())
                hub.supervise(run, lambda batch: handled.set())
        except Interrupted:
            outcomes.append(run.outcome)

    thread = threading.Thread(target=caller)
    thread.start()
    assert handled.wait(10)
    # As the threads pool's time limit does: an exception raised in the waiting thread.
    changed = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(Interrupted)
    )
    assert changed == 1
    thread.join(timeout=10)
    assert not thread.is_alive()
    # The hub let the run go, and the caller stopped it itself on the way out.
    assert [o.stop_reason for o in outcomes] == [StopReason.REQUESTED]
    assert_dies(pids[0])
    assert wait_until(lambda: not any(t.name == "cli-run-hub" for t in threading.enumerate()))
