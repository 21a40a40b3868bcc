"""Graceful worker shutdown: running CLIs get a grace period, then are handed back.

The worker's main process publishes a deadline in Redis when it starts shutting down;
the pool processes running CLIs read it with their cancel flag on every tick.
"""

from __future__ import annotations

import time

from django.conf import settings

from tasks_app.services.redis_store import get_redis

KEY_TTL_S = 24 * 3600


def drain_key(worker: str) -> str:
    return f"agentsite:drain:{worker}"


def start_draining(worker: str) -> float:
    deadline = time.time() + settings.AGENT_SHUTDOWN_GRACE_S
    get_redis().set(drain_key(worker), repr(deadline), ex=KEY_TTL_S)
    return deadline


def stop_draining(worker: str) -> None:
    get_redis().delete(drain_key(worker))


def seconds_left(deadline: bytes | None) -> float | None:
    """How long until a drain `deadline` passes; None without one."""
    return None if deadline is None else max(0.0, float(deadline) - time.time())
