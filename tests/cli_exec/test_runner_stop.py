"""CliRun stops CLIs that finish, hang, run too long, talk too much or are cancelled."""

from __future__ import annotations

import signal
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from cli_exec.events import EventKind
from cli_exec.runner import CliRun, StopReason
from tests.cli_exec.conftest import (
    FAST,
    assert_dies,
    collect,
    fake_argv,
    read_pid,
    stop_when_ready,
)

pytestmark = pytest.mark.timeout(60)


def test_result_then_hang_is_stopped_with_reason_result(command_in):
    run = collect(command_in(fake_argv("result_then_hang")))

    assert run.outcome.stop_reason is StopReason.RESULT
    assert run.outcome.result is not None
    assert run.outcome.result["result"] == "final answer"
    assert run.outcome.exit_code == -signal.SIGINT
    assert not Path(f"/proc/{run.outcome.pid}").exists()


def test_events_after_the_first_result_are_dropped(command_in):
    run = collect(command_in(fake_argv("result_then_hang")))

    # stderr travels on its own pipe, so the late warning may or may not precede the result.
    assert run.events[-1].kind is EventKind.RESULT
    assert [event.payload["text"] for event in run.of(EventKind.TEXT)] == ["answer"]
    assert "late warning" in run.outcome.stderr_tail


def test_wall_timeout_stops_a_busy_cli(command_in):
    limits = replace(FAST, wall_timeout_s=0.5, idle_timeout_s=30)

    run = collect(command_in(fake_argv("ticker")), limits)

    assert run.outcome.stop_reason is StopReason.WALL_TIMEOUT
    assert run.outcome.exit_code is not None


def test_idle_timeout_stops_a_silent_cli(command_in):
    limits = replace(FAST, idle_timeout_s=0.3)

    run = collect(command_in(fake_argv("silent")), limits)

    assert run.outcome.stop_reason is StopReason.IDLE_TIMEOUT
    assert run.outcome.exit_code == -signal.SIGINT


def test_output_cap_stops_a_flooding_cli(command_in):
    limits = replace(FAST, max_output_bytes=200_000)

    run = collect(command_in(fake_argv("flood")), limits)

    assert run.outcome.stop_reason is StopReason.OUTPUT_LIMIT
    assert run.outcome.output_bytes >= 200_000
    kept = sum(len(event.payload["text"]) for event in run.of(EventKind.TEXT))
    assert 0 < kept <= 200_000


def test_request_stop_sends_sigint_first(command_in):
    run = collect(command_in(fake_argv("stubborn", "graceful")), on_batch=stop_when_ready)

    assert run.outcome.stop_reason is StopReason.REQUESTED
    assert run.outcome.exit_code == 0
    assert run.outcome.result is not None
    assert run.outcome.result["subtype"] == "error_during_execution"
    assert run.events[-1].kind is EventKind.RESULT


def test_request_stop_escalates_to_sigterm(command_in):
    run = collect(command_in(fake_argv("stubborn", "ignore_int")), on_batch=stop_when_ready)

    assert run.outcome.stop_reason is StopReason.REQUESTED
    assert run.outcome.exit_code == -signal.SIGTERM


def test_request_stop_escalates_to_sigkill(command_in):
    run = collect(command_in(fake_argv("stubborn", "ignore_all")), on_batch=stop_when_ready)

    assert run.outcome.stop_reason is StopReason.REQUESTED
    assert run.outcome.exit_code == -signal.SIGKILL


@pytest.mark.timeout(20)
def test_request_stop_from_another_thread_wakes_the_loop(command_in):
    # Every timer far beyond the test's timeout: only the wake-up can end this run in time.
    limits = replace(FAST, tick_s=3600, wall_timeout_s=3600, idle_timeout_s=3600)

    def stop_from_thread(run: CliRun, batch: list) -> None:
        if any(event.payload.get("subtype") == "ready" for event in batch):
            threading.Thread(target=run.request_stop).start()

    run = collect(command_in(fake_argv("stubborn", "graceful")), limits, stop_from_thread)

    assert run.outcome.stop_reason is StopReason.REQUESTED
    assert run.outcome.exit_code == 0


def test_request_stop_keeps_the_first_reason(command_in):
    def stop_twice(run: CliRun, batch: list) -> None:
        if any(event.payload.get("subtype") == "ready" for event in batch):
            run.request_stop(StopReason.REQUESTED)
            run.request_stop(StopReason.WALL_TIMEOUT)

    run = collect(command_in(fake_argv("stubborn", "graceful")), on_batch=stop_twice)

    assert run.outcome.stop_reason is StopReason.REQUESTED


def test_leaving_the_context_early_stops_and_reaps_the_cli(command_in):
    with CliRun(command_in(fake_argv("silent")), FAST) as run:
        pid = run.start()
        for batch in run.batches():
            if batch:
                break

    assert run.outcome.stop_reason is StopReason.REQUESTED
    assert not Path(f"/proc/{pid}").exists()


def test_grandchild_ignoring_signals_dies_when_the_cli_exits(command_in, tmp_path):
    pid_file = tmp_path / "grandchild.pid"

    run = collect(command_in(fake_argv("spawns_grandchild", str(pid_file), "exit")))

    assert run.outcome.stop_reason is StopReason.EXITED
    assert run.outcome.result is not None
    assert_dies(read_pid(pid_file))


def test_grandchild_ignoring_signals_dies_when_the_cli_is_stopped(command_in, tmp_path):
    pid_file = tmp_path / "grandchild.pid"

    run = collect(
        command_in(fake_argv("spawns_grandchild", str(pid_file), "wait")),
        on_batch=stop_when_ready,
    )

    assert run.outcome.stop_reason is StopReason.REQUESTED
    assert_dies(read_pid(pid_file))
