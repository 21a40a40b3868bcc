"""Dead letters: jobs that ran out of attempts, recorded through the dead_letter queue.

The record travels as a message so that it is stored even when the failing process
cannot reach the database itself; the consumer stores each key once.
"""

from __future__ import annotations

from typing import Any

from celery import current_app
from django.db import transaction
from django.utils import timezone

from tasks_app.models import DeadLetter, Source, Task
from tasks_app.services.errors import TaskConflict

RECORD_DEAD_LETTER = "tasks_app.record_dead_letter"
DEAD_LETTER_QUEUE = "dead_letter"


def publish(
    *,
    job: str,
    reason: str,
    key: str,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    task_id: int | None = None,
    delivery_id: int | None = None,
) -> None:
    record = {
        "job": job,
        "reason": reason[:2000],
        "key": key,
        "args": args or [],
        "kwargs": kwargs or {},
        "task_id": task_id,
        "delivery_id": delivery_id,
    }
    current_app.send_task(RECORD_DEAD_LETTER, kwargs={"record": record}, queue=DEAD_LETTER_QUEUE)


def publish_on_commit(**record: Any) -> None:
    transaction.on_commit(lambda: publish(**record))


def store(record: dict[str, Any]) -> DeadLetter:
    """The dead_letter consumer: store the record once per key."""
    dead_letter, _ = DeadLetter.objects.get_or_create(
        key=record["key"],
        defaults={
            "job": record["job"],
            "reason": record["reason"],
            "args": record.get("args") or [],
            "kwargs": record.get("kwargs") or {},
            "task_id": record.get("task_id"),
            "delivery_id": record.get("delivery_id"),
        },
    )
    return dead_letter


def requeue(dead_letter: DeadLetter) -> Task | None:
    """Run the job again: a dead-lettered task as a new task (retry_of), a job as a message."""
    if dead_letter.requeued_at is not None:
        raise TaskConflict(f"Dead letter {dead_letter.pk} was already requeued.")
    new_task = None
    if dead_letter.task is not None:
        from tasks_app.services.tasks import task_retry

        new_task = task_retry(task=dead_letter.task, source=Source(dead_letter.task.source))
    else:
        current_app.send_task(dead_letter.job, args=dead_letter.args, kwargs=dead_letter.kwargs)
    DeadLetter.objects.filter(pk=dead_letter.pk).update(
        requeued_at=timezone.now(), requeued_as=new_task
    )
    return new_task
