"""Fixed-window rate limits kept in Redis, shared by every process."""

from __future__ import annotations

import time

from tasks_app.services.redis_store import get_redis

UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """ "30/hour" → (30, 3600)."""
    count, _, unit = rate.partition("/")
    if unit not in UNITS or not count.isdigit():
        raise ValueError(f"rate must look like '30/hour', not {rate!r}")
    return int(count), UNITS[unit]


def _window(key: str, seconds: int) -> tuple[str, int]:
    window = int(time.time() // seconds)
    return f"agentsite:rate:{key}:{window}", seconds - int(time.time() % seconds) + 1


def allow(key: str, rate: str) -> bool:
    """Count one hit; False once the window's allowance is used up."""
    limit, seconds = parse_rate(rate)
    name, ttl = _window(key, seconds)
    pipe = get_redis().pipeline()
    pipe.incr(name)
    pipe.expire(name, ttl)
    hits, _ = pipe.execute()
    return int(hits) <= limit


def first_refusal(key: str, rate: str) -> bool:
    """True once per window: lets us say "slow down" once, not on every refusal."""
    _, seconds = parse_rate(rate)
    name, ttl = _window(f"{key}:told", seconds)
    return bool(get_redis().set(name, "1", nx=True, ex=ttl))
