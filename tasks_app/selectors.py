"""Reads used by the API, the dashboard, consumers and the admin."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, datetime, time
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Count, Prefetch, QuerySet, Sum
from django.utils import timezone

from tasks_app.compiled_sql import CompiledQuery
from tasks_app.filters import TaskFilter
from tasks_app.models import (
    AgentSession,
    GitHubRepository,
    Task,
    TaskDiff,
    TaskEvent,
    TaskStatus,
)

MAX_DB_ID = 2**63 - 1


def task_list(*, owner: AbstractBaseUser, filters: Mapping[str, Any]) -> QuerySet[Task]:
    """The owner's tasks, newest first; raises ValidationError for bad filter values."""
    queryset = (
        Task.objects.filter(owner=owner)
        .select_related("session__github_repository")
        .order_by("-created", "-id")
    )
    filterset = TaskFilter(data=filters, queryset=queryset)
    if not filterset.is_valid():
        raise ValidationError(filterset.errors)
    return filterset.qs


def task_get(*, owner: AbstractBaseUser, task_id: int) -> Task | None:
    """The task if it exists and belongs to `owner`; None hides others' tasks."""
    if not 0 < task_id <= MAX_DB_ID:
        return None
    return (
        Task.objects.select_related("session__github_repository")
        .filter(pk=task_id, owner=owner)
        .first()
    )


def task_events(*, task_id: int, after: int, limit: int) -> list[TaskEvent]:
    return list(TaskEvent.objects.filter(task_id=task_id, seq__gt=after).order_by("seq")[:limit])


def session_list(*, owner: AbstractBaseUser) -> QuerySet[AgentSession]:
    return AgentSession.objects.filter(owner=owner).order_by("-created", "-id")


def session_get(*, owner: AbstractBaseUser, session_id: int) -> AgentSession | None:
    if not 0 < session_id <= MAX_DB_ID:
        return None
    return AgentSession.objects.filter(pk=session_id, owner=owner).first()


def user_spent_today(*, owner: AbstractBaseUser) -> Decimal:
    """USD spent by the owner's tasks that started today (UTC)."""
    midnight = datetime.combine(timezone.now().date(), time.min, tzinfo=UTC)
    total = Task.objects.filter(owner=owner, started_at__gte=midnight).aggregate(
        total=Sum("cost_usd")
    )["total"]
    return total or Decimal("0")


SESSION_RECENT_TASKS = 10


def session_list_with_recent_tasks(*, owner: AbstractBaseUser) -> QuerySet[AgentSession]:
    """The owner's sessions, newest first, each with `task_count` and `recent_tasks`."""
    recent = Task.objects.order_by("-created", "-id")[:SESSION_RECENT_TASKS]
    return (
        session_list(owner=owner)
        .select_related("github_repository")
        .annotate(task_count=Count("tasks"))
        .prefetch_related(Prefetch("tasks", queryset=recent, to_attr="recent_tasks"))
    )


def usable_repositories(*, user: AbstractBaseUser) -> QuerySet[GitHubRepository]:
    """Registered, enabled repositories `user` may run tasks on: their own (staff: all)."""
    repositories = GitHubRepository.objects.filter(enabled=True).order_by("full_name")
    return repositories if getattr(user, "is_staff", False) else repositories.filter(owner=user)


def usable_repository(*, user: AbstractBaseUser, full_name: str) -> GitHubRepository | None:
    return usable_repositories(user=user).filter(full_name__iexact=full_name).first()


# Stands for the name while the lookup is compiled (nothing in it that LIKE escapes).
_NAME_PLACEHOLDER = "agentsite-compiled-repository-name"


@functools.lru_cache(maxsize=4)
def _repository_by_name_query(alias: str) -> CompiledQuery:
    """The lookup of a repository by name, compiled with a stand-in for the name.

    Every webhook delivery looks its repository up, and Django took about 0.4 ms of
    CPU to compile the lookup, five times what running it costs; each process
    compiles it once per database and reuses the SQL with each delivery's name.
    """
    query = GitHubRepository.objects.filter(full_name__iexact=_NAME_PLACEHOLDER).order_by("pk")
    return CompiledQuery.compile(query[:1], alias, _NAME_PLACEHOLDER)


def repository_by_name(full_name: str) -> GitHubRepository | None:
    """The repository registered as `full_name`, compared without case (as GitHub does),
    whether enabled or not; `.filter(full_name__iexact=...).first()` compiled once."""
    query = _repository_by_name_query(connection.alias)
    # What the lookup does to its value (SQLite's LIKE escapes % and _).
    return query.first(GitHubRepository, connection.ops.prep_for_iexact_query(full_name))


# Stands for a status while the lookup is compiled (no task has it).
_STATUS_STAND_IN = "agentsite-compiled-status"


@functools.lru_cache(maxsize=4)
def _task_with_status_query(alias: str) -> CompiledQuery:
    query = Task.objects.filter(status=_STATUS_STAND_IN).only("pk")[:1]
    return CompiledQuery.compile(query, alias, _STATUS_STAND_IN)


def any_task_with_status(status: TaskStatus) -> bool:
    """Whether any task is in `status` (`.exists()`, compiled once per process: every
    ending asks)."""
    return _task_with_status_query(connection.alias).row(status.value) is not None


def task_diff(*, task: Task) -> TaskDiff | None:
    return TaskDiff.objects.filter(task=task).first()


def tasks_to_compact(*, finished_before: datetime, limit: int) -> list[int]:
    """Finished tasks whose events were not compacted yet, the longest finished first."""
    return list(
        Task.objects.filter(
            finished_at__lt=finished_before,
            events_compacted_at__isnull=True,
            status__in=TaskStatus.terminal(),
        )
        .order_by("finished_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )


def text_delta_ids(*, task_id: int, limit: int) -> list[int]:
    """Ids of a task's stored text deltas (the partial texts a completed one repeats)."""
    return list(
        TaskEvent.objects.filter(task_id=task_id, kind="text", payload__partial=True)
        .order_by("seq")
        .values_list("pk", flat=True)[:limit]
    )
