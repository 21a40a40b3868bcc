"""The process's Redis clients (cancel flags, rate limits, connection caps)."""

from __future__ import annotations

from functools import cache

import redis
from django.conf import settings
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry


@cache
def get_redis() -> redis.Redis:
    # redis-py's pool notices a fork and reconnects, so one client per process is safe.
    # One retry, not redis-py's default three: with Redis silent, each try costs the
    # full socket timeout, and callers have fallbacks (the database, failing open).
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.1), 1),
    )


@cache
def get_quick_redis() -> redis.Redis:
    """For the small calls on a running attempt's path (the cancel and drain flags it
    polls several times a second, the model breaker at its start and end): an answer
    takes milliseconds, and a Redis that does not answer must not stall the attempt
    (each caller falls back: the database heartbeat carries a cancel too, the breaker
    counts nothing), so short timeouts and no retry."""
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=0.5,
        socket_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )
