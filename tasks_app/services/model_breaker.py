"""A circuit breaker on the model API, shared by every worker through Redis.

Without it, a model outage makes every queued task burn its attempts against the
outage and end as a dead letter. Here, once AGENT_MODEL_BREAKER_THRESHOLD attempts
failed for the model's sake (429, 5xx, 529) within AGENT_MODEL_BREAKER_WINDOW_S, the
breaker opens: workers stop claiming for AGENT_MODEL_BREAKER_COOLDOWN_S and tasks stay
queued with their attempts. Then one worker claims one task as the probe (half-open):
the model answering closes the breaker, another failure opens it for one more cool-down.
An attempt that fails for the model's sake while the breaker is open is handed back
without using up an attempt. Redis unreachable: the breaker lets everything through.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import structlog
from django.conf import settings
from redis.exceptions import RedisError

from cli_exec.claude import RunSummary, Verdict
from tasks_app.metrics import MODEL_BREAKER_TRIPS
from tasks_app.services.redis_store import get_quick_redis

log = structlog.get_logger(__name__)
PREFIX = "agentsite:model-breaker:"
FAILURES = PREFIX + "failures"  # sorted set of failures, scored by time
SINCE = PREFIX + "since"  # when the model API was first seen degraded (epoch seconds)
OPEN_UNTIL = PREFIX + "open-until"  # no claims before this (epoch seconds)
PROBE = PREFIX + "probe"  # held by the worker whose claim is the half-open probe
POLL_S = 2.0  # how soon a worker held back by someone else's probe looks again


@dataclass(frozen=True)
class BreakerState:
    degraded_since: float | None  # None: closed
    open_until: float | None

    @property
    def closed(self) -> bool:
        return self.degraded_since is None


def model_unavailable(summary: RunSummary) -> bool:
    """The attempt failed because the model API did not serve it."""
    return summary.verdict is Verdict.TRANSIENT and summary.api_error_status is not None


def state() -> BreakerState:
    try:
        since, until = get_quick_redis().mget(SINCE, OPEN_UNTIL)
    except RedisError:
        return BreakerState(None, None)
    return BreakerState(_float(since), _float(until))


def claim_permit() -> tuple[bool, float]:
    """(may claim, seconds until asking again makes sense). While open: no; once the
    cool-down is over: yes for one caller (the probe), who must call probe_done()
    when its claim found nothing."""
    current = state()
    if current.closed:
        return True, 0.0
    now = time.time()
    if current.open_until is not None and now < current.open_until:
        return False, current.open_until - now
    try:
        # A probe either hears the model (closing the breaker) or fails within seconds;
        # one whose worker died frees the way after this, not after a whole task.
        ttl = max(1, int(settings.AGENT_STALE_AFTER_S + settings.AGENT_MODEL_BREAKER_COOLDOWN_S))
        if get_quick_redis().set(PROBE, uuid.uuid4().hex, nx=True, ex=ttl):
            log.info("model_breaker_probe")
            return True, 0.0
    except RedisError:
        return True, 0.0
    return False, POLL_S


def probe_done() -> None:
    """The probe's claim found no task: the next worker may probe."""
    try:
        get_quick_redis().delete(PROBE)
    except RedisError:
        pass


def record(summary: RunSummary) -> bool:
    """Count the attempt's verdict on the model API; True when it failed for the model's
    sake while the breaker is (or now becomes) open: hand it back, attempt unused."""
    if summary.verdict is Verdict.SUCCEEDED:
        model_answered_now()
    elif model_unavailable(summary):
        try:
            return _record_failure()
        except RedisError as exc:
            log.warning("model_breaker_unavailable", error=str(exc))
    return False


def model_answered_now() -> None:
    """The model API just answered an attempt: close the breaker if it is open."""
    try:
        _close()
    except RedisError as exc:
        log.warning("model_breaker_unavailable", error=str(exc))


def _record_failure() -> bool:
    client = get_quick_redis()
    now = time.time()
    window = settings.AGENT_MODEL_BREAKER_WINDOW_S
    cooldown = settings.AGENT_MODEL_BREAKER_COOLDOWN_S
    with client.pipeline() as pipe:
        pipe.zadd(FAILURES, {uuid.uuid4().hex: now})
        pipe.zremrangebyscore(FAILURES, "-inf", now - window)
        pipe.zcard(FAILURES)
        pipe.expire(FAILURES, int(window) + 1)
        pipe.get(SINCE)
        _, _, failures, _, since = pipe.execute()
    if since is None and failures < settings.AGENT_MODEL_BREAKER_THRESHOLD:
        return False
    with client.pipeline() as pipe:
        pipe.set(SINCE, repr(now), nx=True)
        pipe.set(OPEN_UNTIL, repr(now + cooldown))
        pipe.delete(PROBE)
        tripped = pipe.execute()[0]
    if tripped:
        MODEL_BREAKER_TRIPS.inc()
        log.warning("model_breaker_open", failures=failures, window_s=window, cooldown_s=cooldown)
    else:
        log.info("model_breaker_reopened", cooldown_s=cooldown)
    return True


def _close() -> None:
    client = get_quick_redis()
    if client.get(SINCE) is None:
        return
    client.delete(SINCE, OPEN_UNTIL, PROBE, FAILURES)
    log.info("model_breaker_closed")


def _float(raw: bytes | None) -> float | None:
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None
