"""Celery tasks: thin wrappers that take ids (or nothing), load state and call a service."""

from __future__ import annotations

from typing import Any

import structlog
from celery import shared_task

from tasks_app import worker  # noqa: F401 - connects the worker's process signals
from tasks_app.services import dead_letters, maintenance
from tasks_app.services.claims import claim_next_task
from tasks_app.services.execution import execute_claimed_task

log = structlog.get_logger(__name__)


@shared_task(
    name="tasks_app.run_next_agent_task", bind=True, acks_late=True, reject_on_worker_lost=True
)
def run_next_agent_task(self: Any) -> int | None:
    """A wake-up: claim the best task this worker may run now and run it.

    Which task runs is decided by the database at claim time (priority, age, limits),
    so a duplicate or stale message claims nothing. Retries are not Celery retries: a
    transient failure puts the task back in the queue with a backoff (services.outcomes).
    """
    structlog.contextvars.clear_contextvars()
    task = claim_next_task(worker=self.request.hostname or "unknown")
    if task is None:
        return None
    execute_claimed_task(task)
    return task.pk


@shared_task(name="tasks_app.record_dead_letter", acks_late=True)
def record_dead_letter(record: dict[str, Any]) -> int:
    return dead_letters.store(record).pk


@shared_task(name="tasks_app.reap_stale_tasks")
def reap_stale_tasks() -> int:
    return maintenance.reap_stale_tasks()


@shared_task(name="tasks_app.redispatch_queued_tasks")
def redispatch_queued_tasks() -> int:
    return maintenance.redispatch_queued_tasks()
