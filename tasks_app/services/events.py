"""Appending events to a task's stream: gapless seqs, one round trip per batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction

from tasks_app.compiled_sql import insert_all
from tasks_app.models import Task, TaskEvent
from tasks_app.services import broadcast


@dataclass(frozen=True, slots=True)
class NewEvent:
    kind: str
    payload: dict[str, Any]


class StreamOwnershipLost(Exception):
    """The task is no longer running this attempt (cancelled, reaped or re-claimed)."""


_RESERVE_SQL = (
    "UPDATE tasks_app_task SET last_seq = last_seq + %s WHERE id = %s{guard} RETURNING last_seq"
)
_GUARD_SQL = " AND status = 'running' AND attempts = %s"


def _reserve_seqs(task_id: int, count: int, running_attempt: int | None) -> int | None:
    """Bump the task's counter by `count`; returns the last reserved seq or None."""
    params: list[Any] = [count, task_id]
    guard = ""
    if running_attempt is not None:
        guard = _GUARD_SQL
        params.append(running_attempt)
    with connection.cursor() as cursor:
        # The UPDATE locks the task row until commit, so concurrent writers serialize
        # here and a rolled-back batch gives its seqs back: no gaps, no duplicates.
        cursor.execute(_RESERVE_SQL.format(guard=guard), params)
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def append_events(
    task: Task,
    events: Sequence[NewEvent],
    *,
    attempt: int,
    running_attempt: int | None = None,
    task_is_current: bool = False,
) -> list[TaskEvent]:
    """Store `events` in order after the task's last event and broadcast them on commit.

    With `running_attempt`, the write only happens while the task is still running that
    attempt; otherwise StreamOwnershipLost is raised and nothing is stored. With
    `task_is_current`, `task` is the row as this transaction leaves it (with its session
    and repository), and a status push shows it instead of reading the task again.
    """
    if not events:
        return []
    # No savepoint when nested (a claim, an ending): a lost stream is raised after the
    # block, so the caller's transaction is not spoilt by it, and the caller lets it out.
    with transaction.atomic(savepoint=False):
        last = _reserve_seqs(task.pk, len(events), running_attempt)
        if last is not None:
            rows = store_reserved(
                task, events, last_seq=last, attempt=attempt, task_is_current=task_is_current
            )
    if last is None:
        raise StreamOwnershipLost(f"task {task.pk} is not running attempt {running_attempt}")
    return rows


def store_reserved(
    task: Task,
    events: Sequence[NewEvent],
    *,
    last_seq: int,
    attempt: int,
    task_is_current: bool = False,
) -> list[TaskEvent]:
    """Store `events` as the seqs up to `last_seq`, which the caller's transaction has
    just reserved (bumped the task's `last_seq` by their number), and broadcast them on
    commit. A status change reserves its events in its own UPDATE of the task."""
    first = last_seq - len(events) + 1
    rows = [
        TaskEvent(task_id=task.pk, seq=first + i, attempt=attempt, kind=e.kind, payload=e.payload)
        for i, e in enumerate(events)
    ]
    insert_all(rows)
    transaction.on_commit(
        lambda: broadcast.task_events_stored(task, rows, task_is_current=task_is_current)
    )
    return rows
