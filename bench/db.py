"""Reads and set-up the bench does directly in the database (Django is set up by then)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from tests.live import wait_until

POLL_S = 0.02


def create_user_token(username: str) -> str:
    """A user with a fresh API token; returns the token's key."""
    from django.contrib.auth import get_user_model

    from tasks_app.services.tokens import api_token_create

    user, _ = get_user_model().objects.get_or_create(username=username)
    _, key = api_token_create(user=user, name="bench")
    return key


def register_repository(full_name: str, username: str) -> None:
    from django.contrib.auth import get_user_model

    from tasks_app.models import GitHubRepository

    owner = get_user_model().objects.get(username=username)
    GitHubRepository.objects.update_or_create(
        full_name=full_name, defaults={"owner": owner, "enabled": True}
    )


def finished_tasks(ids: Sequence[int], timeout_s: float, poll_s: float = POLL_S) -> list[Any]:
    """Wait until every task is terminal; returns them in id order."""
    from tasks_app.models import Task, TaskStatus

    terminal = TaskStatus.terminal()
    wait_until(
        lambda: Task.objects.filter(pk__in=ids, status__in=terminal).count() == len(ids),
        timeout_s,
        f"{len(ids)} tasks to finish",
        poll_s=poll_s,
    )
    return list(Task.objects.filter(pk__in=ids).order_by("pk"))


def status_counts(tasks: Iterable[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for task in tasks:
        counts[task.status] = counts.get(task.status, 0) + 1
    return counts


def cli_start_times(ids: Sequence[int]) -> dict[int, float]:
    """When each task's fake CLI began (`bench_started_at` of its init event)."""
    from tasks_app.models import TaskEvent

    rows = TaskEvent.objects.filter(task_id__in=ids, kind="system", payload__subtype="init")
    return {row.task_id: float(row.payload["bench_started_at"]) for row in rows}


def wait_cli_running(ids: Sequence[int], timeout_s: float) -> None:
    """Wait until every task's CLI has printed its init line (and it is stored)."""
    wait_until(
        lambda: len(cli_start_times(ids)) == len(ids), timeout_s, "the CLIs to start", poll_s=0.05
    )


def pending_deliveries() -> int:
    """Accepted GitHub deliveries whose job has not finished yet."""
    from tasks_app.models import DeliveryOutcome, WebhookDelivery

    return WebhookDelivery.objects.filter(
        outcome=DeliveryOutcome.ACCEPTED, processed_at__isnull=True
    ).count()


def last_seq(task_id: int) -> int:
    from tasks_app.models import Task

    return int(Task.objects.values_list("last_seq", flat=True).get(pk=task_id))


def require_free_connections(needed: int) -> None:
    """Raise unless PostgreSQL can take `needed` more connections right now."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('max_connections')::int - count(*) FROM pg_stat_activity"
        )
        (free,) = cursor.fetchone()
    if free < needed:
        raise RuntimeError(
            f"PostgreSQL has {free} free connections and this benchmark needs {needed} "
            "(one per worker pool process, plus web's pool); raise max_connections"
        )


def settle() -> int:
    """Cancel whatever a failed benchmark left unfinished; returns how many."""
    from tasks_app.models import Task, TaskStatus
    from tasks_app.services.errors import TaskConflict
    from tasks_app.services.tasks import task_cancel

    left = list(Task.objects.exclude(status__in=TaskStatus.terminal()))
    for task in left:
        try:
            task_cancel(task=task, reason="bench clean-up")
        except TaskConflict:
            continue  # it finished meanwhile
    return len(left)


def text_delta_rows(task_ids: Sequence[int]) -> int:
    """Stored text-delta events of these tasks (merged deltas count once)."""
    from tasks_app.models import TaskEvent

    return TaskEvent.objects.filter(
        task_id__in=task_ids, kind="text", payload__partial=True
    ).count()
