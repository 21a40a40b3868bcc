"""Template context every page gets."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest

from tasks_app.services import model_breaker


def model_api(request: HttpRequest) -> dict[str, Any]:
    """When the model API circuit breaker is open: since when (a banner on every page)."""
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    since = model_breaker.state().degraded_since
    if since is None:
        return {}
    return {"model_api_degraded_since": datetime.fromtimestamp(since, tz=UTC)}
