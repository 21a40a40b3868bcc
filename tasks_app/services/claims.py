"""Choosing and claiming the next task to run, with every limit enforced at claim time.

Claims are serialized (a transaction-scoped advisory lock on PostgreSQL; SQLite's
IMMEDIATE transactions serialize writers already), so the per-user and per-worker
counts read here cannot change before the claim commits.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, connections, transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from tasks_app.compiled_sql import CompiledQuery
from tasks_app.models import Task, TaskStatus
from tasks_app.services.lifecycle import claim_task

CLAIM_LOCK_KEY = 7_112_016_001  # any constant bigint shared by every claimer


def _serialize_claims() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CLAIM_LOCK_KEY])


def startable_tasks(*, now: datetime, max_running_per_user: int) -> QuerySet[Task]:
    """Queued tasks whose backoff is over, whose owner is under the running limit and
    whose session runs nothing, best first (priority, then age); each may still wait
    behind an earlier queued task of its session (see `eligible_tasks`)."""
    running = Task.objects.filter(status=TaskStatus.RUNNING)
    owners_at_limit = (
        running.values("owner")
        .annotate(n=Count("id"))
        .filter(n__gte=max_running_per_user)
        .values("owner")
    )
    return (
        Task.objects.filter(status=TaskStatus.QUEUED)
        .filter(Q(run_after__isnull=True) | Q(run_after__lte=now))
        .exclude(owner__in=owners_at_limit)
        .exclude(session__in=running.values("session"))
        .order_by("-priority", "created", "pk")
    )


def _earlier_in_session() -> Exists:
    """Tasks of one session run one at a time and in order."""
    return Exists(
        Task.objects.filter(
            session=OuterRef("session"), status=TaskStatus.QUEUED, pk__lt=OuterRef("pk")
        )
    )


def eligible_tasks(*, now: datetime) -> QuerySet[Task]:
    """Queued tasks that may start now, best first (priority, then age).

    One query, but the database may take it quadratic in the queue's length (see
    `best_eligible_task`): the claim uses it only when its candidates all wait.
    """
    startable = startable_tasks(now=now, max_running_per_user=settings.AGENT_MAX_RUNNING_PER_USER)
    return startable.exclude(_earlier_in_session())


# Stands for "now" while the query is compiled; replaced by the real time at each claim.
_NOW_PLACEHOLDER = datetime(2000, 1, 1, 0, 0, 0, 424_242, tzinfo=UTC)
# How many startable tasks a claim reads at once, best first.
CANDIDATES = 4


@functools.lru_cache(maxsize=16)
def _best_startable_query(alias: str, max_running_per_user: int) -> CompiledQuery:
    """The best startable tasks' query, compiled with a stand-in for "now".

    Every attempt claims, and Django takes about 3 ms of CPU to compile this query
    (several times what the database needs to run it), so each process compiles it once
    per limit and reuses the SQL with the time of each claim.
    """
    query = startable_tasks(
        now=_NOW_PLACEHOLDER, max_running_per_user=max_running_per_user
    ).annotate(waits_in_session=_earlier_in_session())
    # Some backends (SQLite) adapt the datetime while compiling.
    adapted = connections[alias].ops.adapt_datetimefield_value(_NOW_PLACEHOLDER)
    return CompiledQuery.compile(query[:CANDIDATES], alias, _NOW_PLACEHOLDER, adapted)


def best_eligible_task(*, now: datetime) -> Task | None:
    """eligible_tasks(now=now).first(), in time linear in the queue's length.

    The session rule in one query is an anti-join of the queue with itself, and when the
    table's statistics predate the queue (a burst of tasks before autovacuum's next
    ANALYZE) PostgreSQL plans it as a nested loop: with 254 tasks queued a claim took
    55-62 ms, under the lock every claim waits for. So the best few startable tasks are
    read in one scan, and the rule is an output column, worked out only for those few
    (PostgreSQL evaluates a costly output column after the sort and limit).
    """
    query = _best_startable_query(connection.alias, settings.AGENT_MAX_RUNNING_PER_USER)
    candidates = query.rows(Task, connection.ops.adapt_datetimefield_value(now))
    for task in candidates:
        if not task.waits_in_session:
            return task
    if len(candidates) < CANDIDATES:
        return None
    # Every candidate waits behind an earlier task of its session (follow-ups given a
    # higher priority than the task before them): rare, and then the whole rule at once.
    return eligible_tasks(now=now).first()


@functools.lru_cache(maxsize=16)
def _worker_running_query(alias: str, worker: str) -> CompiledQuery:
    """How many tasks `worker` runs with a fresh heartbeat (a stand-in for the cutoff),
    compiled once per process: every claim asks."""
    query = (
        Task.objects.filter(status=TaskStatus.RUNNING, worker=worker)
        .filter(heartbeat_at__gte=_NOW_PLACEHOLDER)
        .order_by()
        .values("worker")
        .annotate(n=Count("pk"))
        .values("n")
    )
    adapted = connections[alias].ops.adapt_datetimefield_value(_NOW_PLACEHOLDER)
    return CompiledQuery.compile(query, alias, _NOW_PLACEHOLDER, adapted)


def worker_running_count(*, worker: str, now: datetime) -> int:
    fresh = now - timedelta(seconds=settings.AGENT_STALE_AFTER_S)
    query = _worker_running_query(connection.alias, worker)
    return query.scalar(connection.ops.adapt_datetimefield_value(fresh)) or 0


def claim_next_task(*, worker: str) -> Task | None:
    """Claim the best task this worker may start now, or None."""
    now = timezone.now()
    with transaction.atomic():
        _serialize_claims()
        if worker_running_count(worker=worker, now=now) >= settings.AGENT_MAX_CONCURRENCY:
            return None
        task = best_eligible_task(now=now)
        if task is None or not claim_task(task, worker=worker):
            return None
    return task
