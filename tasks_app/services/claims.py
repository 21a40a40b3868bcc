"""Choosing and claiming the next task to run, with every limit enforced at claim time.

Claims are serialized (a transaction-scoped advisory lock on PostgreSQL; SQLite's
IMMEDIATE transactions serialize writers already), so the per-user and per-worker
counts read here cannot change before the claim commits.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from tasks_app.models import Task, TaskStatus
from tasks_app.services.lifecycle import claim_task

CLAIM_LOCK_KEY = 7_112_016_001  # any constant bigint shared by every claimer


def _serialize_claims() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CLAIM_LOCK_KEY])


def eligible_tasks(*, now: datetime) -> QuerySet[Task]:
    """Queued tasks that may start now, best first (priority, then age)."""
    running = Task.objects.filter(status=TaskStatus.RUNNING)
    owners_at_limit = (
        running.values("owner")
        .annotate(n=Count("id"))
        .filter(n__gte=settings.AGENT_MAX_RUNNING_PER_USER)
        .values("owner")
    )
    # Tasks of one session run one at a time and in order.
    earlier_in_session = Task.objects.filter(
        session=OuterRef("session"), status=TaskStatus.QUEUED, pk__lt=OuterRef("pk")
    )
    return (
        Task.objects.filter(status=TaskStatus.QUEUED)
        .filter(Q(run_after__isnull=True) | Q(run_after__lte=now))
        .exclude(owner__in=owners_at_limit)
        .exclude(session__in=running.values("session"))
        .exclude(Exists(earlier_in_session))
        .order_by("-priority", "created", "pk")
    )


def worker_running_count(*, worker: str, now: datetime) -> int:
    fresh = now - timedelta(seconds=settings.AGENT_STALE_AFTER_S)
    return Task.objects.filter(
        status=TaskStatus.RUNNING, worker=worker, heartbeat_at__gte=fresh
    ).count()


def claim_next_task(*, worker: str) -> Task | None:
    """Claim the best task this worker may start now, or None."""
    now = timezone.now()
    with transaction.atomic():
        _serialize_claims()
        if worker_running_count(worker=worker, now=now) >= settings.AGENT_MAX_CONCURRENCY:
            return None
        task = eligible_tasks(now=now).first()
        if task is None or not claim_task(task, worker=worker):
            return None
    return task


def has_eligible_tasks() -> bool:
    return eligible_tasks(now=timezone.now()).exists()
