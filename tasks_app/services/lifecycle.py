"""The task status machine: every transition is one compare-and-set UPDATE.

Two workers can never both run a task, and a late message can never move a finished
task, because each UPDATE names the statuses it may leave and terminal statuses are
never among them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from tasks_app.compiled_sql import update_and_refresh
from tasks_app.models import Task, TaskStatus
from tasks_app.services import broadcast
from tasks_app.services.events import NewEvent, store_reserved

S = TaskStatus
ALLOWED: Mapping[TaskStatus, frozenset[TaskStatus]] = {
    S.QUEUED: frozenset({S.RUNNING, S.CANCELLED}),
    S.RUNNING: frozenset(
        {S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.CANCELLED, S.QUEUED, S.DEAD_LETTER}
    ),
}


class IllegalTransition(ValueError):
    pass


def transition(
    task: Task,
    *,
    to: TaskStatus,
    from_statuses: Iterable[TaskStatus],
    updates: Mapping[str, Any] | None = None,
    guard: Q | None = None,
    reason: str = "",
    events_before: Sequence[NewEvent] = (),
) -> bool:
    """Move `task` to `to` if it is still in one of `from_statuses` (and matches `guard`).

    Returns whether this call won. On success `events_before` and then a `status` event
    are stored in the same transaction (their seqs reserved by the UPDATE itself) and
    `task` holds the row as the UPDATE left it; the status push shows `task` as it is
    here, so a caller must not change the row later in the transaction.
    """
    sources = frozenset(from_statuses)
    for source in sources:
        if to not in ALLOWED.get(source, frozenset()):
            raise IllegalTransition(f"{source} → {to} is not a legal transition")
    fields = dict(updates or {})
    if to in TaskStatus.terminal():
        fields.setdefault("finished_at", timezone.now())
    # No savepoint when nested (a claim, an ending): nothing here raises but the
    # database itself, and then the caller's whole transaction is lost anyway.
    with transaction.atomic(savepoint=False):
        # The row read back by the UPDATE itself: what the status push shows, without a
        # query of its own (with the session and repository it shows, loaded if missing).
        rows = Task.objects.filter(pk=task.pk, status__in=sources).filter(guard or Q())
        reserved = F("last_seq") + (len(events_before) + 1)
        if not update_and_refresh(task, rows, {"status": to, "last_seq": reserved, **fields}):
            return False
        broadcast.load_snapshot_relations(task)
        payload: dict[str, Any] = {"status": str(to)}
        if reason:
            payload["reason"] = reason
        if task.error and to in TaskStatus.terminal():
            payload["error"] = task.error
        events = [*events_before, NewEvent("status", payload)]
        store_reserved(
            task, events, last_seq=task.last_seq, attempt=task.attempts, task_is_current=True
        )
    return True


def claim_task(task: Task, *, worker: str, pid: int | None = None) -> bool:
    """queued → running for one attempt; exactly one of any number of racers wins."""
    now = timezone.now()
    return transition(
        task,
        to=S.RUNNING,
        from_statuses=[S.QUEUED],
        guard=Q(run_after__isnull=True) | Q(run_after__lte=now),
        updates={
            "attempts": F("attempts") + 1,
            "started_at": now,
            "heartbeat_at": now,
            "worker": worker,
            "pid": pid,
            "run_after": None,
            "cancel_requested_at": None,
        },
    )
