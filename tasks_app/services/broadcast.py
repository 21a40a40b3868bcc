"""Pushing stored events and status changes to the WebSocket groups (after commit).

A failed push loses nothing: every event is in the database and a client that
reconnects with `after=<last seq>` replays what it missed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import structlog
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from redis.exceptions import RedisError

if TYPE_CHECKING:
    from tasks_app.models import Task, TaskEvent

log = structlog.get_logger(__name__)


def task_group(task_id: int) -> str:
    return f"task.{task_id}"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def event_message(event: TaskEvent) -> dict[str, Any]:
    """The wire shape of one event, shared by replay and live pushes."""
    return {
        "type": "event",
        "seq": event.seq,
        "kind": event.kind,
        "attempt": event.attempt,
        "payload": event.payload,
        "created": event.created.isoformat(),
    }


def _group_send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except (RedisError, OSError) as exc:
        log.warning("broadcast_failed", group=group, error=str(exc))


def task_events_stored(task: Task, events: Sequence[TaskEvent]) -> None:
    message = {
        "type": "task.events",
        "task": task.pk,
        "events": [event_message(e) for e in events],
    }
    _group_send(task_group(task.pk), message)
    if any(e.kind == "status" for e in events):
        from tasks_app.api.serializers import TaskOutput
        from tasks_app.models import Task as TaskModel

        fresh = TaskModel.objects.filter(pk=task.pk).first()
        if fresh is not None:
            _group_send(
                user_group(fresh.owner_id),
                {"type": "task.status", "task": TaskOutput(fresh).data},
            )
