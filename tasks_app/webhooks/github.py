"""`POST /webhooks/github/`: verify, record, enqueue; answer as DESIGN.md's table says."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from tasks_app.services import webhooks


def error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"detail": message}, status=status)


def declared_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


@csrf_exempt
@require_POST
def github_webhook(request: HttpRequest) -> JsonResponse:
    delivery_id = request.headers.get("X-GitHub-Delivery", "")[:100]
    event = request.headers.get("X-GitHub-Event", "")
    limit = settings.GITHUB_WEBHOOK_MAX_BYTES
    if not webhooks.webhook_configured():
        webhooks.record_rejection(delivery_id=delivery_id, event=event, reason="secret unset")
        return error("GitHub webhooks are not configured (GITHUB_WEBHOOK_SECRET is unset).", 503)
    # The declared size is checked before the body is touched.
    if declared_length(request) > limit or len(request.body) > limit:
        webhooks.record_rejection(delivery_id=delivery_id, event=event, reason="body over 1 MiB")
        return error(f"The body is over the limit of {limit} bytes.", 413)
    signature = request.headers.get("X-Hub-Signature-256")
    if not webhooks.signature_valid(settings.GITHUB_WEBHOOK_SECRET, request.body, signature):
        reason = "signature missing" if not signature else "signature wrong"
        webhooks.record_rejection(delivery_id=delivery_id, event=event, reason=reason)
        return error(f"X-Hub-Signature-256 is {reason.split()[-1]}.", 401)
    payload = webhooks.parse_payload(request.body)
    if payload is None:
        webhooks.record_rejection(delivery_id=delivery_id, event=event, reason="not JSON")
        return error("The body is not a JSON object.", 400)
    if not delivery_id or not event:
        webhooks.record_rejection(delivery_id=delivery_id, event=event, reason="headers missing")
        return error("X-GitHub-Delivery and X-GitHub-Event are required.", 400)
    answer = webhooks.record_delivery(delivery_id=delivery_id, event=event, payload=payload)
    return JsonResponse(answer.body, status=answer.status)
