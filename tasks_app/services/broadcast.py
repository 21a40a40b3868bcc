"""Pushing stored events and status changes to the WebSocket groups (after commit).

A failed push loses nothing: every event is in the database, consumers fill any gap in
seqs from it, and a client that reconnects with `after=<last seq>` replays what it missed.

Channel-layer messages (consumers.py handles them):
- to `task.<id>`: {"type": "task.events", "task": id, "last_seq": n,
  "events": [event_message(...)], "snapshot": TaskOutput | None}; `events` is empty when
  the batch is too large to inline (consumers then read it from the database) and
  `snapshot` is set when the batch holds a status event;
- to `task.<id>`: {"type": "task.preview", "task": id, "after": seq, "kind": k,
  "payload": {...}}: the text block being written, not stored yet, shown after the
  event `after` (services/event_writer.py);
- to `user.<id>`: {"type": "task.status", "task_id": id, "status": s,
  "task": TaskOutput | None}, one per status event.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any

import structlog
from channels.layers import get_channel_layer
from django.db import DatabaseError
from redis.exceptions import RedisError

from tasks_app.compiled_sql import get_by_pk
from tasks_app.jsonsafe import PostgresSafeJSONEncoder

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from tasks_app.models import Task, TaskEvent

log = structlog.get_logger(__name__)

# channels-redis stores one copy of a group message per web process; a few huge tool
# results must not turn into megabytes per process, so big batches travel by reference.
MAX_INLINE_PAYLOAD_BYTES = 256 * 1024
# A push that Redis has not taken by then is given up (consumers read the database).
PUSH_TIMEOUT_S = 5.0
# After a failed push this process skips pushes for a while: with Redis down or silent,
# every push would otherwise cost a worker's attempt (it pushes between reading its
# CLI's lines) or a request its full timeout. Nothing is lost: consumers fill gaps
# from the database when pushes resume, and on their heartbeat and on reconnect.
PUSH_PAUSE_AFTER_FAILURE_S = 10.0


class _PushLoop:
    """One event loop per process, on a daemon thread, that every push from sync code uses.

    async_to_sync would start a thread and an event loop per call, and channels-redis
    keeps a connection pool per loop: every push paid for a thread, a loop and a new
    Redis connection (most of a worker's time per streamed line). A Celery pool child is
    forked without the parent's threads, hence one loop per PID.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    def _current(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="push-loop", daemon=True)
                thread.start()
                self._loop, self._pid = loop, os.getpid()
            return self._loop

    def run(self, coroutine: Coroutine[Any, Any, None], timeout_s: float) -> None:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._current())
        try:
            future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise


_push_loop = _PushLoop()


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


def task_snapshot(task: Task) -> dict[str, Any]:
    """The task as the REST API shows it, as a plain dict (msgpack and JSON safe)."""
    from tasks_app.api.serializers import task_representation

    return task_representation(task)


def prepare_snapshots() -> None:
    """Import and build what task_snapshot uses, before a prefork worker forks its pool:
    the API's serializers bring DRF's, and with them requests, urllib3, pygments'
    formatters and django.contrib.postgres, which grew a process by 5.4 MiB at its first
    status push (built before the fork: a prefork slot's PSS about 1 MiB lower)."""
    from tasks_app.api.serializers import prepare_task_representation

    prepare_task_representation()


_pushes_paused_until = 0.0


def _group_send(group: str, message: dict[str, Any]) -> None:
    global _pushes_paused_until
    layer = get_channel_layer()
    if layer is None or time.monotonic() < _pushes_paused_until:
        return
    try:
        send_now = getattr(layer, "group_send_blocking", None)  # our pub/sub layer's
        if send_now is not None:
            send_now(group, message)
        else:
            _push_loop.run(layer.group_send(group, message), PUSH_TIMEOUT_S)
    except (RedisError, OSError) as exc:
        # OSError includes TimeoutError. The caller's transaction is committed and must
        # not fail now; consumers read the database.
        _pushes_paused_until = time.monotonic() + PUSH_PAUSE_AFTER_FAILURE_S
        log.warning("broadcast_failed", group=group, error=str(exc) or type(exc).__name__)
    except (TypeError, ValueError) as exc:
        # msgpack refused this payload: this push alone is lost, Redis is fine.
        log.warning("broadcast_failed", group=group, error=str(exc))


def _encoded(payload: dict[str, Any]) -> str:
    """`payload` through the model field's encoder: a pushed payload is exactly what a
    replay reads back (NUL as U+FFFD, decimals as strings), and msgpack only sees JSON."""
    return json.dumps(payload, cls=PostgresSafeJSONEncoder)


def _inline_events(events: Sequence[TaskEvent]) -> list[dict[str, Any]]:
    """The batch's wire messages, or [] when it is too large to push inline."""
    messages: list[dict[str, Any]] = []
    size = 0
    for event in events:
        encoded = _encoded(event.payload)
        size += len(encoded)
        if size > MAX_INLINE_PAYLOAD_BYTES:
            return []
        messages.append({**event_message(event), "payload": json.loads(encoded)})
    return messages


def snapshot_queryset() -> QuerySet[Task]:
    """What a snapshot shows besides the task: its session and the session's repository."""
    from tasks_app.models import AgentSession
    from tasks_app.models import Task as TaskModel

    stored_files = (f"session__{name}" for name in AgentSession.STORED_FILES)
    return TaskModel.objects.select_related("session__github_repository").defer(*stored_files)


def load_snapshot_relations(task: Task) -> None:
    """Give `task` what `snapshot_queryset` would have loaded with it, where it lacks it,
    each by a lookup compiled once per process."""
    from tasks_app.models import AgentSession, GitHubRepository

    if not task._meta.get_field("session").is_cached(task):
        task.session = get_by_pk(AgentSession, task.session_id, defer=AgentSession.STORED_FILES)
    session = task.session
    repository = session._meta.get_field("github_repository")
    if session.github_repository_id is not None and not repository.is_cached(session):
        session.github_repository = get_by_pk(GitHubRepository, session.github_repository_id)


def _fresh_snapshot(task_id: int) -> dict[str, Any] | None:
    try:
        fresh = snapshot_queryset().filter(pk=task_id).first()
    except DatabaseError as exc:
        # Consumers read the task themselves when a status push comes without it.
        log.warning("broadcast_snapshot_failed", task_id=task_id, error=str(exc))
        return None
    return None if fresh is None else task_snapshot(fresh)


def task_events_stored(
    task: Task, events: Sequence[TaskEvent], *, task_is_current: bool = False
) -> None:
    """Called on commit by append_events: one push to the task, one per status to its
    owner, with the task as the change left it (`task` itself when it is current)."""
    if not events:
        return
    statuses = [e.payload.get("status") for e in events if e.kind == "status"]
    snapshot = None
    if statuses:
        snapshot = task_snapshot(task) if task_is_current else _fresh_snapshot(task.pk)
    _group_send(
        task_group(task.pk),
        {
            "type": "task.events",
            "task": task.pk,
            "last_seq": events[-1].seq,
            "events": _inline_events(events),
            "snapshot": snapshot,
        },
    )
    for status in statuses:
        _group_send(
            user_group(task.owner_id),
            {"type": "task.status", "task_id": task.pk, "status": status, "task": snapshot},
        )


def task_preview(task_id: int, *, after: int, kind: str, payload: dict[str, Any]) -> None:
    """Show watchers the text block being written after the stored event `after`, as
    its stored event will show it."""
    message = {"type": "task.preview", "task": task_id, "after": after, "kind": kind}
    _group_send(task_group(task_id), {**message, "payload": json.loads(_encoded(payload))})
