"""summarize_run judges a run from its result (subtype, is_error) and how it stopped."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from cli_exec.claude import Verdict, summarize_run
from cli_exec.runner import RunLimits, RunOutcome, StopReason

LIMITS = RunLimits(wall_timeout_s=1800, idle_timeout_s=300, max_output_bytes=64 * 1_048_576)


def outcome(
    result: dict[str, Any] | None = None,
    stop_reason: StopReason = StopReason.EXITED,
    exit_code: int | None = 0,
    stderr_tail: str = "",
) -> RunOutcome:
    return RunOutcome(
        stop_reason=stop_reason,
        exit_code=exit_code,
        result=result,
        stderr_tail=stderr_tail,
        stdout_lines=10,
        output_bytes=1000,
        duration_s=1.0,
        pid=123,
        limits=LIMITS,
        session_id="from-init",
    )


def result(subtype: str = "success", is_error: bool = False, **extra: Any) -> dict[str, Any]:
    return {"type": "result", "subtype": subtype, "is_error": is_error, **extra}


def test_success_reports_text_cost_tokens_and_session():
    summary = summarize_run(
        outcome(
            result(
                result="Hello",
                session_id="s-1",
                total_cost_usd=0.000125,
                num_turns=2,
                duration_ms=82,
                api_error_status=None,
                usage={
                    "input_tokens": 10,
                    "cache_creation_input_tokens": 5,
                    "cache_read_input_tokens": 100,
                    "output_tokens": 3,
                },
            )
        )
    )

    assert summary.verdict is Verdict.SUCCEEDED
    assert summary.error == ""
    assert summary.result_text == "Hello"
    assert summary.cli_session_id == "s-1"
    assert summary.cost_usd == Decimal("0.000125")
    assert (summary.input_tokens, summary.output_tokens) == (115, 3)
    assert (summary.num_turns, summary.duration_ms, summary.api_error_status) == (2, 82, None)


def test_success_lingering_cli_stopped_after_result_still_succeeds():
    summary = summarize_run(outcome(result(), stop_reason=StopReason.RESULT, exit_code=-2))

    assert summary.verdict is Verdict.SUCCEEDED


def test_max_turns_fails_naming_the_limit():
    summary = summarize_run(
        outcome(
            result(
                "error_max_turns", True, num_turns=2, errors=["Reached maximum number of turns (1)"]
            ),
            exit_code=1,
        )
    )

    assert summary.verdict is Verdict.FAILED
    assert summary.error == "The agent stopped after reaching its limit of 1 turns."


def test_max_budget_fails_naming_the_limit():
    summary = summarize_run(
        outcome(
            result("error_max_budget_usd", True, errors=["Reached maximum budget ($0.00001)"]),
            exit_code=1,
        )
    )

    assert summary.verdict is Verdict.FAILED
    assert summary.error == "The agent stopped after reaching its budget limit of $0.00001."


@pytest.mark.parametrize(
    ("status", "verdict", "start"),
    [
        (529, Verdict.TRANSIENT, "The model API was unavailable (HTTP 529)"),
        (500, Verdict.TRANSIENT, "The model API was unavailable (HTTP 500)"),
        (429, Verdict.TRANSIENT, "The model API was unavailable (HTTP 429)"),
        (401, Verdict.FAILED, "The model API refused the credentials (HTTP 401)"),
        (403, Verdict.FAILED, "The model API refused the credentials (HTTP 403)"),
        (400, Verdict.FAILED, "The model API rejected the request (HTTP 400)"),
    ],
)
def test_api_errors_are_judged_by_status(status, verdict, start):
    summary = summarize_run(
        outcome(
            result(
                is_error=True, api_error_status=status, result=f"API Error: {status} boom\nmore"
            ),
            exit_code=1,
        )
    )

    assert summary.verdict is verdict
    assert summary.error == f"{start}: API Error: {status} boom"
    assert summary.api_error_status == status


def test_error_without_api_status_fails_with_the_cli_message():
    summary = summarize_run(outcome(result(is_error=True, result="Credit balance is too low")))

    assert summary.verdict is Verdict.FAILED
    assert summary.error == "The CLI reported an error: Credit balance is too low"


@pytest.mark.parametrize(
    ("stop_reason", "verdict", "error"),
    [
        (StopReason.REQUESTED, Verdict.CANCELLED, "The run was cancelled."),
        (
            StopReason.WALL_TIMEOUT,
            Verdict.TIMED_OUT,
            "The run hit its wall-clock limit of 30 min and was stopped.",
        ),
        (
            StopReason.IDLE_TIMEOUT,
            Verdict.TIMED_OUT,
            "The CLI printed nothing for 5 min (idle limit) and was stopped.",
        ),
    ],
)
def test_interrupted_result_follows_our_stop_reason(stop_reason, verdict, error):
    interrupted = result("error_during_execution", True, errors=["[ede_diagnostic] x"])

    summary = summarize_run(outcome(interrupted, stop_reason=stop_reason))

    assert (summary.verdict, summary.error) == (verdict, error)


def test_interrupted_result_we_did_not_cause_fails_with_the_cli_error():
    failed = result(
        "error_during_execution", True, errors=["No conversation found with session ID: abc"]
    )

    summary = summarize_run(outcome(failed, exit_code=1))

    assert summary.verdict is Verdict.FAILED
    assert summary.error == (
        "The CLI failed during execution: No conversation found with session ID: abc"
    )


@pytest.mark.parametrize(
    ("stop_reason", "verdict", "error"),
    [
        (StopReason.REQUESTED, Verdict.CANCELLED, "The run was cancelled."),
        (
            StopReason.WALL_TIMEOUT,
            Verdict.TIMED_OUT,
            "The run hit its wall-clock limit of 30 min and was stopped.",
        ),
        (
            StopReason.IDLE_TIMEOUT,
            Verdict.TIMED_OUT,
            "The CLI printed nothing for 5 min (idle limit) and was stopped.",
        ),
        (
            StopReason.OUTPUT_LIMIT,
            Verdict.FAILED,
            "The CLI printed more output than 64 MiB and was stopped.",
        ),
    ],
)
def test_no_result_after_our_stop_follows_the_stop_reason(stop_reason, verdict, error):
    summary = summarize_run(outcome(None, stop_reason=stop_reason, exit_code=-15))

    assert (summary.verdict, summary.error) == (verdict, error)
    assert summary.cli_session_id == "from-init"


def test_exit_without_result_is_transient_and_quotes_stderr():
    summary = summarize_run(
        outcome(None, exit_code=143, stderr_tail="warming up\nError: ECONNRESET\n")
    )

    assert summary.verdict is Verdict.TRANSIENT
    assert summary.error == (
        "The CLI exited with code 143 before reporting a result: Error: ECONNRESET"
    )


def test_killed_without_result_names_the_signal():
    summary = summarize_run(outcome(None, exit_code=-9))

    assert summary.verdict is Verdict.TRANSIENT
    assert summary.error == "The CLI was killed by SIGKILL before reporting a result."


def test_unexpected_subtype_fails():
    summary = summarize_run(outcome(result("error_something_new", True)))

    assert summary.verdict is Verdict.FAILED
    assert summary.error == "The CLI ended with an unexpected result (error_something_new)."


def test_odd_field_types_are_ignored_not_trusted():
    summary = summarize_run(
        outcome(result(total_cost_usd="lots", num_turns=True, usage=[], session_id=5))
    )

    assert summary.cost_usd is None
    assert summary.num_turns is None
    assert summary.input_tokens is None
    assert summary.cli_session_id == "from-init"
