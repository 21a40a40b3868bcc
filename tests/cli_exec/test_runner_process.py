"""CliRun's process hygiene: parent death, signal dispositions, start errors, threads."""

from __future__ import annotations

import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from cli_exec import CliStartError
from cli_exec.runner import CliCommand, CliRun, RunOutcome, StopReason
from tests.cli_exec.conftest import (
    FAKE_CLIS,
    FAST,
    assert_outlived_by_nothing,
    collect,
    fake_argv,
    stop_when_ready,
)

pytestmark = pytest.mark.timeout(60)
REPO_ROOT = Path(__file__).resolve().parents[2]


def test_cli_dies_when_its_supervising_process_is_killed(tmp_path):
    pid_file = tmp_path / "cli.pid"
    supervisor = [sys.executable, str(FAKE_CLIS / "supervisor.py"), str(REPO_ROOT), str(pid_file)]
    assert_outlived_by_nothing(supervisor, pid_file)


def test_sigint_ignored_by_the_worker_still_reaches_the_cli(command_in):
    # Pool workers often ignore SIGINT, and ignored signals survive exec.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        run = collect(command_in(fake_argv("stubborn", "plain")), on_batch=stop_when_ready)
    finally:
        signal.signal(signal.SIGINT, previous)

    assert run.outcome.exit_code == -signal.SIGINT


def test_run_started_from_a_worker_thread_completes(command_in):
    outcomes: list[RunOutcome] = []
    command = command_in(fake_argv("conversation"), stdin=b"hi")
    thread = threading.Thread(target=lambda: outcomes.append(collect(command).outcome))

    thread.start()
    thread.join(timeout=30)

    assert outcomes and outcomes[0].stop_reason is StopReason.EXITED
    assert outcomes[0].exit_code == 0


def test_missing_binary_raises_cli_start_error(tmp_path):
    command = CliCommand(argv=[str(tmp_path / "no-such-cli")], cwd=tmp_path, env={})

    with pytest.raises(CliStartError, match="no-such-cli"):
        CliRun(command, FAST).start()


def test_outcome_before_the_run_ends_raises(command_in):
    with CliRun(command_in(fake_argv("conversation")), FAST) as run:
        run.start()
        with pytest.raises(RuntimeError, match="not finished"):
            _ = run.outcome


def test_starting_twice_raises(command_in):
    with CliRun(command_in(fake_argv("conversation")), FAST) as run:
        run.start()
        with pytest.raises(RuntimeError, match="twice"):
            run.start()


def test_closing_a_run_that_never_started_is_harmless(command_in):
    run = CliRun(command_in(fake_argv("conversation")), FAST)

    run.close()
    run.request_stop()


@pytest.mark.parametrize(
    "field",
    [
        "wall_timeout_s",
        "idle_timeout_s",
        "max_line_bytes",
        "kept_line_bytes",
        "max_output_bytes",
        "tick_s",
    ],
)
def test_limits_refuse_non_positive_values(field):
    with pytest.raises(ValueError, match=field):
        replace(FAST, **{field: 0})
