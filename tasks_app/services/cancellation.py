"""Cancel requests travel through Redis (fast) with the database as the fallback.

The API sets `cancel_requested_at` and a Redis flag; the worker running the task hears
of the flag from the thread that reads all of a process's flags (flag_reads), which
wakes the attempt, and reads the database column on every heartbeat, so a cancel still
arrives when Redis lost the flag.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from redis.exceptions import RedisError

from tasks_app.services.flag_reads import PROCESS_FLAGS
from tasks_app.services.redis_store import get_redis

log = structlog.get_logger(__name__)
FLAG_TTL_S = 24 * 3600


def _flag_key(task_id: int) -> str:
    return f"agentsite:cancel:{task_id}"


def request_stop(task_id: int) -> None:
    try:
        get_redis().set(_flag_key(task_id), "1", ex=FLAG_TTL_S)
    except RedisError as exc:
        log.warning("cancel_flag_not_set", task_id=task_id, error=str(exc))


def stop_requested(task_id: int) -> bool:
    try:
        return bool(get_redis().exists(_flag_key(task_id)))
    except RedisError as exc:
        log.warning("cancel_flag_unreadable", task_id=task_id, error=str(exc))
        return False


def read_flags(task_id: int, worker: str) -> tuple[bool, bytes | None] | None:
    """The task's cancel flag and its worker's drain deadline as this process last read
    them (flag_reads); None while it has not read them yet."""
    values = PROCESS_FLAGS.latest(_attempt_keys(task_id, worker))
    if values is None:
        return None
    cancel, deadline = values
    return cancel is not None, deadline


def subscribe_flags(task_id: int, worker: str, on_set: Callable[[], None]) -> Callable[[], None]:
    """Call `on_set` once this process's reading shows the task's cancel flag or its
    worker's drain deadline newly set (flag_reads); returns the unsubscribe function."""
    return PROCESS_FLAGS.subscribe(_attempt_keys(task_id, worker), on_set)


def _attempt_keys(task_id: int, worker: str) -> list[str]:
    """What stops an attempt: its task's cancel flag, its worker's drain deadline."""
    from tasks_app.services.draining import drain_key

    return [_flag_key(task_id), drain_key(worker)]


def clear(task_id: int) -> None:
    try:
        get_redis().delete(_flag_key(task_id))
    except RedisError as exc:
        log.warning("cancel_flag_not_cleared", task_id=task_id, error=str(exc))
