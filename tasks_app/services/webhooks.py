"""Verifying and recording GitHub deliveries; accepted ones become a job on commit.

Everything here is cheap (an HMAC, a parse, one or two inserts): the webhook answers in
milliseconds and never waits on GitHub or on a worker.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F

from tasks_app.metrics import WEBHOOK_DELIVERIES
from tasks_app.models import DeliveryOutcome, WebhookDelivery
from tasks_app.services import dispatch
from tasks_app.services.github_events import NotATrigger, classify


@dataclass(frozen=True)
class DeliveryAnswer:
    status: int
    body: dict[str, Any]


def signature_valid(secret: str, body: bytes, header: str | None) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header.removeprefix("sha256="))


def record_rejection(*, delivery_id: str, event: str, reason: str) -> None:
    # Unverified: the claimed id is kept in the reason, never in the unique column.
    WEBHOOK_DELIVERIES.labels(DeliveryOutcome.REJECTED.value).inc()
    WebhookDelivery.objects.create(
        delivery_id=f"rejected-{uuid.uuid4().hex}",
        event=event[:64],
        outcome=DeliveryOutcome.REJECTED,
        reason=f"{reason} (claimed delivery {delivery_id[:60] or '-'})"[:200],
    )


def parse_payload(body: bytes) -> dict[str, Any] | None:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def _summary_fields(event: str, payload: dict[str, Any]) -> dict[str, str]:
    def name(key: str, field: str) -> str:
        value = payload.get(key)
        return str(value.get(field, ""))[:200] if isinstance(value, dict) else ""

    return {
        "event": event[:64],
        "action": str(payload.get("action", ""))[:64],
        "repository": name("repository", "full_name"),
        "sender": name("sender", "login")[:100],
    }


def insert_once(**fields: Any) -> WebhookDelivery | None:
    """Insert a delivery, or None when its id was recorded already.

    The webhook runs in autocommit, where the INSERT alone is atomic; a transaction
    would add two round trips to every delivery. Inside a caller's transaction a
    savepoint keeps a duplicate from breaking it.
    """
    try:
        if connection.in_atomic_block:
            with transaction.atomic():
                return WebhookDelivery.objects.create(**fields)
        return WebhookDelivery.objects.create(**fields)
    except IntegrityError:
        return None


def record_delivery(*, delivery_id: str, event: str, payload: dict[str, Any]) -> DeliveryAnswer:
    """Record a verified delivery once; accepted triggers get a processing job."""
    fields = _summary_fields(event, payload)
    outcome, reason = DeliveryOutcome.ACCEPTED, ""
    if event == "ping":
        outcome, reason = DeliveryOutcome.IGNORED, "ping"
    else:
        try:
            classify(event, payload)
        except NotATrigger as exc:
            outcome, reason = DeliveryOutcome.IGNORED, str(exc)
    delivery = insert_once(
        delivery_id=delivery_id, outcome=outcome, reason=reason, payload=payload, **fields
    )
    if delivery is None:
        # GitHub redelivers; concurrent copies race here and the unique index picks one.
        WebhookDelivery.objects.filter(delivery_id=delivery_id).exclude(
            outcome=DeliveryOutcome.REJECTED
        ).update(duplicates=F("duplicates") + 1)
        WEBHOOK_DELIVERIES.labels(DeliveryOutcome.DUPLICATE.value).inc()
        return DeliveryAnswer(200, {"outcome": "duplicate", "delivery": delivery_id})
    WEBHOOK_DELIVERIES.labels(outcome.value).inc()
    if outcome == DeliveryOutcome.ACCEPTED:
        dispatch.publish_delivery_processing_on_commit(delivery.pk)
        return DeliveryAnswer(202, {"outcome": "accepted", "delivery": delivery_id})
    return DeliveryAnswer(200, {"outcome": "ignored", "reason": reason, "delivery": delivery_id})


def replay_delivery(delivery: WebhookDelivery) -> WebhookDelivery:
    """Process a recorded delivery again, as a new delivery of the same payload."""
    if delivery.payload is None:
        raise ValueError("This delivery has no stored payload to replay.")
    replay_id = f"{delivery.delivery_id[:60]}:replay:{uuid.uuid4().hex[:8]}"
    record_delivery(delivery_id=replay_id, event=delivery.event, payload=delivery.payload)
    return WebhookDelivery.objects.get(delivery_id=replay_id)


def webhook_configured() -> bool:
    return bool(settings.GITHUB_WEBHOOK_SECRET)
