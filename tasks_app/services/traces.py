"""An agent task's spans, in the trace of the request that created it.

Whichever worker claims a task was woken by a message that may have been sent for
another task, so the wake-up's trace is not the task's. The creating request's
context is stored on the task (a W3C traceparent) and every attempt continues that
trace (claim, attempt, CLI run, and what they publish: the GitHub report), linked to
the wake-up job that claimed it. With tracing off these are the API's no-op spans.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, Status, StatusCode

from cli_exec.claude import RunSummary, Verdict
from cli_exec.runner import RunOutcome
from tasks_app.models import Task

SCOPE = "agentsite.tasks"
TRACEPARENT = "traceparent"


def _tracer() -> trace.Tracer:
    # Looked up per use, not at import: the provider is set later (per pool process).
    return trace.get_tracer(SCOPE)


def current_trace_parent() -> str:
    """The current span as a traceparent header value; "" when nothing is traced."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get(TRACEPARENT, "")


def _task_context(task: Task) -> Context | None:
    """The creating request's context; None (the current one) for untraced tasks."""
    if not task.trace_parent:
        return None
    return propagate.extract({TRACEPARENT: task.trace_parent})


def _attributes(task: Task) -> dict[str, str | int]:
    return {"agentsite.task_id": task.pk, "agentsite.attempt": task.attempts}


def claim_started() -> int:
    """A claim's start time, for `attempt_span` (spans take nanoseconds since the epoch)."""
    return time.time_ns()


@contextlib.contextmanager
def attempt_span(task: Task, *, claim_started_ns: int) -> Iterator[Span]:
    """The claimed attempt's span (current while it runs), after a finished span for
    its claim; both children of the task's creating request."""
    parent = _task_context(task)
    woken_by = trace.get_current_span().get_span_context()
    links = [Link(woken_by)] if parent is not None and woken_by.is_valid else []
    attributes = {**_attributes(task), "agentsite.worker": task.worker}
    claim = _tracer().start_span(
        "agent_task.claim", context=parent, links=links, start_time=claim_started_ns
    )
    claim.set_attributes(attributes)
    claim.end()
    with _tracer().start_as_current_span(
        "agent_task.attempt", context=parent, links=links, attributes=attributes
    ) as span:
        yield span


@contextlib.contextmanager
def cli_span(task: Task) -> Iterator[Span]:
    """The CLI run's span; `cli_started` and `cli_ended` say what it was and how it ended."""
    with _tracer().start_as_current_span("claude.cli", attributes=_attributes(task)) as span:
        yield span


def cli_started(span: Span, pid: int) -> None:
    span.set_attribute("process.pid", pid)


def cli_ended(span: Span, outcome: RunOutcome, summary: RunSummary) -> None:
    span.set_attributes(
        {
            "process.exit_code": outcome.exit_code if outcome.exit_code is not None else -1,
            "agentsite.stop_reason": outcome.stop_reason.value,
            "agentsite.stdout_lines": outcome.stdout_lines,
            "agentsite.verdict": summary.verdict.value,
            "agentsite.cost_usd": float(summary.cost_usd or 0),
            "agentsite.num_turns": summary.num_turns or 0,
        }
    )
    if summary.verdict is not Verdict.SUCCEEDED:
        span.set_status(Status(StatusCode.ERROR, summary.error))
