"""Publishing wake-ups for the workers.

A message says "there is work"; the database decides which task runs next (priority,
age, per-user and per-session limits), so a lost, late or duplicated message can
neither lose nor double a task. Beat's re-publisher covers messages lost with Redis.
"""

from __future__ import annotations

import structlog
from celery import current_app
from django.db import transaction
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)

AGENT_QUEUE = "agent"
GITHUB_QUEUE = "github"
RUN_NEXT_TASK = "tasks_app.run_next_agent_task"
PROCESS_DELIVERY = "tasks_app.github.process_delivery"
REPORT_OUTCOME = "tasks_app.github.report_outcome"


def publish_wakeup(*, countdown: float | None = None) -> None:
    try:
        current_app.send_task(RUN_NEXT_TASK, queue=AGENT_QUEUE, countdown=countdown)
    except (OperationalError, RedisError, OSError) as exc:
        # The task is safe in the database; beat's re-publisher sends a fresh wake-up
        # once the broker is back. Failing the caller (an API request, an attempt's
        # ending) for a lost wake-up would turn a broker outage into errors.
        log.warning("wakeup_not_published", error=str(exc)[:200])


def publish_wakeup_on_commit(*, countdown: float | None = None) -> None:
    transaction.on_commit(lambda: publish_wakeup(countdown=countdown))


def publish_delivery_processing(delivery_pk: int) -> None:
    current_app.send_task(PROCESS_DELIVERY, args=[delivery_pk], queue=GITHUB_QUEUE)


def publish_delivery_processing_on_commit(delivery_pk: int) -> None:
    transaction.on_commit(lambda: publish_delivery_processing(delivery_pk))


def publish_outcome_report(task_pk: int) -> None:
    current_app.send_task(REPORT_OUTCOME, args=[task_pk], queue=GITHUB_QUEUE)
