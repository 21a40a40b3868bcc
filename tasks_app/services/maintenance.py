"""Beat's periodic repairs: reap tasks whose worker vanished, re-publish lost wake-ups."""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog
from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from tasks_app.metrics import TASK_RETRIES, queue_length
from tasks_app.models import DeliveryOutcome, Task, TaskStatus, WebhookDelivery
from tasks_app.services import dead_letters, dispatch, lifecycle
from tasks_app.services.outcomes import observe_ending
from tasks_app.services.redis_store import get_redis
from tasks_app.signals import task_finished

log = structlog.get_logger(__name__)
MAX_WAKEUPS_PER_ROUND = 200


def reap_stale_tasks() -> int:
    """Running tasks without a recent heartbeat go back to the queue or to dead letters."""
    cutoff = timezone.now() - timedelta(seconds=settings.AGENT_STALE_AFTER_S)
    reaped = 0
    stale = Task.objects.filter(status=TaskStatus.RUNNING, heartbeat_at__lt=cutoff)
    for task in stale.only("pk", "attempts", "max_attempts", "worker"):
        if _reap(task, cutoff):
            reaped += 1
    return reaped


def _reap(task: Task, cutoff: datetime) -> bool:
    lost = f"its worker {task.worker or '?'} stopped sending heartbeats"
    retry = task.attempts < task.max_attempts
    target = TaskStatus.QUEUED if retry else TaskStatus.DEAD_LETTER
    updates = (
        {"run_after": None, "dispatched_at": timezone.now(), "pid": None}
        if retry
        else {"error": f"The task was lost {task.attempts} times: {lost}.", "pid": None}
    )
    with transaction.atomic():
        # The heartbeat guard lets a worker that was only slow keep its task.
        won = lifecycle.transition(
            task,
            to=target,
            from_statuses=[TaskStatus.RUNNING],
            guard=Q(heartbeat_at__lt=cutoff, attempts=task.attempts),
            updates=updates,
            reason=lost,
        )
        if not won:
            return False
        if retry:
            dispatch.publish_wakeup_on_commit()
            TASK_RETRIES.labels("worker_lost").inc()
        else:
            observe_ending(task, TaskStatus.DEAD_LETTER)
            dead_letters.publish_on_commit(
                job=dispatch.RUN_NEXT_TASK,
                reason=task.error,
                task_id=task.pk,
                key=f"task:{task.pk}",
            )
            transaction.on_commit(lambda: task_finished.send(sender=Task, task=task))
    log.warning("task_reaped", task_id=task.pk, to=target.value, worker=task.worker)
    return True


def agent_queue_length() -> int:
    with current_app.connection_for_read() as conn:
        return queue_length(conn, dispatch.AGENT_QUEUE)


def redispatch_queued_tasks() -> int:
    """Re-publish wake-ups for queued tasks whose messages are gone (e.g. Redis lost them).

    Only the shortfall is published: due tasks waiting longer than
    AGENT_REDISPATCH_AFTER_S minus the messages still in the queue. A surplus wake-up is
    harmless (the claim finds nothing), a missing one would strand a task.
    """
    now = timezone.now()
    overdue = Task.objects.filter(
        Q(run_after__isnull=True) | Q(run_after__lte=now),
        status=TaskStatus.QUEUED,
        dispatched_at__lt=now - timedelta(seconds=settings.AGENT_REDISPATCH_AFTER_S),
    )
    count = overdue.count()
    if not count:
        return 0
    missing = min(count - agent_queue_length(), MAX_WAKEUPS_PER_ROUND)
    if missing <= 0:
        return 0
    for _ in range(missing):
        dispatch.publish_wakeup()
    overdue.update(dispatched_at=now)
    log.info("wakeups_republished", count=missing, overdue=count)
    return missing


def redispatch_stalled_deliveries() -> int:
    """Re-publish jobs of accepted deliveries that never got processed (lost with Redis).

    A delivery gets one fresh job per AGENT_DELIVERY_REDISPATCH_AFTER_S; a copy that
    meets a job still running (or retrying) yields to it (github_jobs.process_delivery).
    """
    window = settings.AGENT_DELIVERY_REDISPATCH_AFTER_S
    stalled = WebhookDelivery.objects.filter(
        outcome=DeliveryOutcome.ACCEPTED,
        processed_at__isnull=True,
        received__lt=timezone.now() - timedelta(seconds=window),
    ).values_list("pk", flat=True)[:MAX_WAKEUPS_PER_ROUND]
    published = 0
    client = get_redis()
    for pk in stalled:
        if client.set(f"agentsite:delivery-redispatched:{pk}", "1", nx=True, ex=int(window)):
            dispatch.publish_delivery_processing(pk)
            published += 1
    if published:
        log.warning("deliveries_republished", count=published)
    return published
