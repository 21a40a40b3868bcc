"""`/metrics` for Prometheus: from loopback, or with the METRICS_TOKEN bearer token."""

import hmac
import ipaddress

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from tasks_app.metrics import exposition


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def metrics_allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(header.encode(), f"Bearer {token}".encode()):
        return True
    # A request a proxy forwarded comes from loopback too; it must bring the token.
    forwarded = "X-Forwarded-For" in request.headers
    return is_loopback(request.META.get("REMOTE_ADDR", "")) and not forwarded


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not metrics_allowed(request):
        return JsonResponse(
            {"detail": "Metrics are served to loopback, or with 'Authorization: Bearer "
             "<METRICS_TOKEN>'."},
            status=403,
        )  # fmt: skip
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
