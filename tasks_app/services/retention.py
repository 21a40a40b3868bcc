"""Event retention: tasks finished more than AGENT_EVENT_RETENTION_DAYS ago lose their
text deltas (every partial text a completed message repeats), keeping statuses, tool
calls and results, the completed texts and the result; a replay then renders the same
conversation from a fraction of the rows.

Beat runs it in bounded rounds: deltas are deleted by primary key, a batch per short
transaction (row locks on those rows only, never the table), and a round stops after
ROWS_PER_ROUND; whatever is left waits for the next round. A task is marked compacted
only once none of its deltas remain, so an interrupted round loses nothing but time.
Seqs of a compacted task have holes where the deltas were: replays read by seq order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from tasks_app import selectors
from tasks_app.metrics import EVENTS_COMPACTED
from tasks_app.models import Task, TaskEvent

log = structlog.get_logger(__name__)
ROWS_PER_BATCH = 2_000
ROWS_PER_ROUND = 100_000
TASKS_PER_QUERY = 100


@dataclass(frozen=True)
class Compaction:
    tasks: int  # tasks whose compaction this round completed
    dropped: int  # events deleted
    more: bool  # the round's bound stopped it before the backlog ended


def compact_finished_events(
    *,
    now: datetime | None = None,
    rows_per_round: int = ROWS_PER_ROUND,
    rows_per_batch: int = ROWS_PER_BATCH,
) -> Compaction:
    days = settings.AGENT_EVENT_RETENTION_DAYS
    if days <= 0:
        return Compaction(0, 0, more=False)
    now = now or timezone.now()
    cutoff = now - timedelta(days=days)
    tasks = dropped = 0
    while pending := selectors.tasks_to_compact(finished_before=cutoff, limit=TASKS_PER_QUERY):
        for task_id in pending:
            while True:
                budget = min(rows_per_batch, rows_per_round - dropped)
                if budget <= 0:
                    return _done(Compaction(tasks, dropped, more=True))
                deleted = _drop_batch(task_id, budget)
                dropped += deleted
                if deleted < budget:
                    Task.objects.filter(pk=task_id).update(events_compacted_at=now)
                    tasks += 1
                    break
    return _done(Compaction(tasks, dropped, more=False))


def _drop_batch(task_id: int, limit: int) -> int:
    ids = selectors.text_delta_ids(task_id=task_id, limit=limit)
    if not ids:
        return 0
    with transaction.atomic():
        deleted, _ = TaskEvent.objects.filter(pk__in=ids).delete()
        Task.objects.filter(pk=task_id).update(events_dropped=F("events_dropped") + deleted)
    return deleted


def _done(result: Compaction) -> Compaction:
    if result.dropped or result.tasks:
        EVENTS_COMPACTED.inc(result.dropped)
        log.info("events_compacted", tasks=result.tasks, dropped=result.dropped, more=result.more)
    return result
