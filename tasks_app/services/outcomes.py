"""Ending an attempt: the verdict becomes a status, a retry with backoff, or a dead letter.

The attempt's last events (the CLI's result among them) and the status change commit in
one transaction, guarded by the attempt number: a task ends exactly once.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

import structlog
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from cli_exec.claude import RunSummary, Verdict
from tasks_app import selectors
from tasks_app.jsonsafe import without_nul
from tasks_app.metrics import DEAD_LETTERS, RUN_SECONDS, TASK_RETRIES, TASKS_FINISHED, record_cost
from tasks_app.models import Task, TaskStatus
from tasks_app.services import dead_letters, dispatch, lifecycle
from tasks_app.services.events import NewEvent
from tasks_app.signals import task_finished

log = structlog.get_logger(__name__)

FINAL_STATUS = {
    Verdict.SUCCEEDED: TaskStatus.SUCCEEDED,
    Verdict.FAILED: TaskStatus.FAILED,
    Verdict.TIMED_OUT: TaskStatus.TIMED_OUT,
    Verdict.CANCELLED: TaskStatus.CANCELLED,
}


def refusal(error: str, *, transient: bool = False) -> RunSummary:
    """A summary for an attempt that ended before the CLI could run."""
    return RunSummary(
        verdict=Verdict.TRANSIENT if transient else Verdict.FAILED,
        error=error,
        result_text="",
        cli_session_id=None,
        cost_usd=None,
        input_tokens=None,
        output_tokens=None,
        num_turns=None,
        duration_ms=None,
        api_error_status=None,
    )


def backoff_delay_s(attempt: int) -> float:
    """Exponential backoff with equal jitter: half fixed, half random, capped."""
    ceiling = min(
        settings.AGENT_RETRY_BACKOFF_MAX_S, settings.AGENT_RETRY_BACKOFF_S * 2 ** (attempt - 1)
    )
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not crypto


def _result_fields(summary: RunSummary, exit_code: int | None) -> dict[str, object]:
    """Columns every ending records; cost and tokens add up across attempts."""
    zero = Value(Decimal("0"))
    fields: dict[str, object] = {
        "exit_code": exit_code,
        "result_text": without_nul(summary.result_text),
        "error": without_nul(summary.error),
        "num_turns": summary.num_turns,
        "duration_ms": summary.duration_ms,
    }
    if summary.cost_usd is not None:
        fields["cost_usd"] = Coalesce(F("cost_usd"), zero) + summary.cost_usd
    for name in ("input_tokens", "output_tokens"):
        value = getattr(summary, name)
        if value is not None:
            fields[name] = Coalesce(F(name), Value(0)) + value
    return fields


def _plan(
    task: Task, attempt: int, summary: RunSummary, handed_back: str, now: datetime
) -> tuple[TaskStatus, dict[str, object], str, float | None]:
    """(status, extra fields, reason, retry delay) for how this attempt ended."""
    if handed_back:
        # Not the task's fault: this attempt does not count against its budget.
        extra = {"max_attempts": F("max_attempts") + 1, "run_after": None, "dispatched_at": now}
        return TaskStatus.QUEUED, extra, f"handed back: {handed_back}", 0.0
    if summary.verdict is not Verdict.TRANSIENT:
        return FINAL_STATUS[summary.verdict], {}, "", None
    if attempt < task.max_attempts:
        delay = backoff_delay_s(attempt)
        run_after = now + timedelta(seconds=delay)
        extra = {"run_after": run_after, "dispatched_at": run_after}
        return TaskStatus.QUEUED, extra, f"retrying in {delay:.0f} s: {summary.error}", delay
    return TaskStatus.DEAD_LETTER, {}, f"gave up after {attempt} attempts", None


def finish_attempt(
    task: Task,
    *,
    attempt: int,
    summary: RunSummary,
    final_events: Sequence[NewEvent],
    exit_code: int | None = None,
    handed_back: str = "",
    finished_at: datetime | None = None,
) -> TaskStatus | None:
    """Record how `attempt` ended; returns the new status, or None if it lost the task."""
    now = finished_at or timezone.now()
    status, extra, reason, delay = _plan(task, attempt, summary, handed_back, now)
    updates = {**_result_fields(summary, exit_code), **extra, "pid": None}
    # One transaction: the attempt's last events, its ending and the status event.
    won = lifecycle.transition(
        task,
        to=status,
        from_statuses=[TaskStatus.RUNNING],
        guard=Q(attempts=attempt),
        updates=updates,
        reason=reason,
        events_before=final_events,
    )
    if not won:
        log.warning("attempt_finished_too_late", attempt=attempt, wanted=status.value)
        return None
    record_cost(summary.cost_usd)
    if status is TaskStatus.QUEUED:
        TASK_RETRIES.labels("handed_back" if handed_back else "transient").inc()
    after_ending(task, status, delay)
    return status


def observe_ending(task: Task, status: TaskStatus) -> None:
    TASKS_FINISHED.labels(status.value).inc()
    if task.started_at and task.finished_at:
        seconds = (task.finished_at - task.started_at).total_seconds()
        RUN_SECONDS.labels(status.value).observe(max(seconds, 0.0))
    if status is TaskStatus.DEAD_LETTER:
        DEAD_LETTERS.inc()


def after_ending(task: Task, status: TaskStatus, retry_delay_s: float | None) -> None:
    """What follows an ending, published once the ending is committed."""
    if status is TaskStatus.QUEUED and retry_delay_s:
        dispatch.publish_wakeup_on_commit(countdown=retry_delay_s)
    if status in TaskStatus.terminal():
        observe_ending(task, status)
    if status is TaskStatus.DEAD_LETTER:
        dead_letters.publish_on_commit(
            job="tasks_app.run_next_agent_task",
            reason=task.error or "attempts exhausted",
            task_id=task.pk,
            key=f"task:{task.pk}",
        )
    if status in TaskStatus.terminal():
        transaction.on_commit(lambda: task_finished.send(sender=Task, task=task))
    # The ended attempt may have been what held others back (user, session, worker).
    if selectors.any_task_with_status(TaskStatus.QUEUED):
        dispatch.publish_wakeup_on_commit()
