"""The REST API's per-user throttle, which lets requests through while its cache is down."""

from __future__ import annotations

from typing import Any

import structlog
from redis.exceptions import RedisError
from rest_framework.throttling import UserRateThrottle

log = structlog.get_logger(__name__)


class FailOpenUserRateThrottle(UserRateThrottle):
    """DRF's UserRateThrottle, except that an unreachable cache (Redis) admits the
    request: the throttle guards against floods, and turning a Redis outage into an
    API outage (every request a 500) is worse than a few unthrottled seconds."""

    def allow_request(self, request: Any, view: Any) -> bool:
        try:
            return super().allow_request(request, view)
        except RedisError as exc:
            log.warning("throttle_skipped_cache_unreachable", error=str(exc)[:200])
            return True
