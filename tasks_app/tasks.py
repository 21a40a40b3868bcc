"""Celery tasks: thin wrappers that take ids (or nothing), load state and call a service."""

from __future__ import annotations

from typing import Any

import structlog
from celery import Task as CeleryTask
from celery import shared_task
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings

from tasks_app import worker  # noqa: F401 - connects the worker's process signals
from tasks_app.services import (
    dead_letters,
    dispatch,
    github_jobs,
    maintenance,
    model_breaker,
    retention,
    sandboxing,
    traces,
)
from tasks_app.services.claims import claim_next_task
from tasks_app.services.dispatch import PROCESS_DELIVERY, REPORT_OUTCOME, RUN_NEXT_TASK
from tasks_app.services.execution import execute_claimed_task
from tasks_app.services.github import GitHubTransientError

log = structlog.get_logger(__name__)


@shared_task(name=RUN_NEXT_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def run_next_agent_task(self: Any) -> int | None:
    """A wake-up: claim the best task this worker may run now and run it.

    Which task runs is decided by the database at claim time (priority, age, limits),
    so a duplicate or stale message claims nothing. Retries are not Celery retries: a
    transient failure puts the task back in the queue with a backoff (services.outcomes).
    """
    if not sandboxing.can_claim():
        return None  # the task stays queued for a worker that can sandbox it
    permitted, wait_s = model_breaker.claim_permit()
    if not permitted:  # the model API is down: tasks wait queued, attempts kept
        dispatch.publish_wakeup(countdown=wait_s)
        return None
    claim_started_ns = traces.claim_started()
    task = claim_next_task(worker=self.request.hostname or "unknown")
    if task is None:
        model_breaker.probe_done()
        return None
    with traces.attempt_span(task, claim_started_ns=claim_started_ns):
        execute_claimed_task(task)
    return task.pk


@shared_task(name="tasks_app.record_dead_letter", acks_late=True)
def record_dead_letter(record: dict[str, Any]) -> int:
    return dead_letters.store(record).pk


@shared_task(name="tasks_app.reap_stale_tasks")
def reap_stale_tasks() -> int:
    return maintenance.reap_stale_tasks()


@shared_task(name="tasks_app.compact_finished_events")
def compact_finished_events() -> int:
    return retention.compact_finished_events().dropped


@shared_task(name="tasks_app.redispatch_queued_tasks")
def redispatch_queued_tasks() -> int:
    return maintenance.redispatch_queued_tasks()


@shared_task(name="tasks_app.redispatch_stalled_deliveries")
def redispatch_stalled_deliveries() -> int:
    return maintenance.redispatch_stalled_deliveries()


class GitHubJob(CeleryTask):
    """Retry policy of every job that talks to GitHub; exhausted jobs become dead letters."""

    acks_late = True
    max_retries = settings.GITHUB_JOB_MAX_RETRIES
    retry_backoff_s = 2
    retry_backoff_max_s = 300

    def countdown(self, exc: GitHubTransientError) -> float:
        backoff = get_exponential_backoff_interval(
            self.retry_backoff_s, self.request.retries, self.retry_backoff_max_s, full_jitter=True
        )
        # GitHub says when to come back after a rate limit; never sooner than that.
        return max(backoff, exc.retry_after_s or 0.0)

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        delivery_pk = args[0] if self.name == PROCESS_DELIVERY else None
        task_pk = args[0] if self.name == REPORT_OUTCOME else None
        github_jobs.job_failed(
            job=self.name, delivery_pk=delivery_pk, task_id=task_pk, error=str(exc)
        )


@shared_task(name=PROCESS_DELIVERY, base=GitHubJob, bind=True)
def process_github_delivery(self: GitHubJob, delivery_pk: int) -> None:
    try:
        github_jobs.process_delivery(delivery_pk)
    except GitHubTransientError as exc:
        raise self.retry(exc=exc, countdown=self.countdown(exc)) from exc


@shared_task(name=REPORT_OUTCOME, base=GitHubJob, bind=True)
def report_github_outcome(self: GitHubJob, task_pk: int) -> None:
    try:
        github_jobs.report_outcome(task_pk)
    except GitHubTransientError as exc:
        raise self.retry(exc=exc, countdown=self.countdown(exc)) from exc
