"""Event retention: old tasks lose their text deltas, in bounded rounds, and nothing else."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tasks_app.models import Task, TaskEvent, TaskStatus
from tasks_app.services.retention import compact_finished_events
from tests.factories import make_task, make_user

pytestmark = pytest.mark.django_db
S = TaskStatus


def conversation(task: Task, deltas: int) -> list[tuple[str, dict]]:
    """Stored as a streamed run leaves it: status, deltas then the completed text, a tool
    call and its result, more deltas and text, the result, the final status."""
    message = [
        ("text", {"text": f"w{i} ", "partial": True, "message_id": "m1"}) for i in range(deltas)
    ]
    complete = " ".join(f"w{i}" for i in range(deltas))
    events = [
        ("status", {"status": "running"}),
        *message,
        ("text", {"text": complete, "partial": False, "message_id": "m1"}),
        ("tool_use", {"id": "t1", "name": "Bash", "input": {"command": "ls"}}),
        ("tool_result", {"tool_use_id": "t1", "content": "a.txt", "is_error": False}),
        ("text", {"text": "Done", "partial": True, "message_id": "m2"}),
        ("text", {"text": "Done.", "partial": False, "message_id": "m2"}),
        ("stderr", {"text": "a warning"}),
        ("result", {"subtype": "success", "result": "Done."}),
        ("status", {"status": task.status}),
    ]
    TaskEvent.objects.bulk_create(
        TaskEvent(task=task, seq=seq, attempt=1, kind=kind, payload=payload)
        for seq, (kind, payload) in enumerate(events, start=1)
    )
    Task.objects.filter(pk=task.pk).update(last_seq=len(events))
    return events


def finished(owner, days_ago: float, status: S = S.SUCCEEDED) -> Task:
    return make_task(owner, status=status, finished_at=timezone.now() - timedelta(days=days_ago))


def stored(task: Task) -> list[tuple[str, dict]]:
    return [(e.kind, e.payload) for e in task.events.order_by("seq")]


def test_old_tasks_keep_everything_but_their_text_deltas(settings):
    settings.AGENT_EVENT_RETENTION_DAYS = 30
    owner = make_user()
    old, failed = finished(owner, 31), finished(owner, 45, S.FAILED)
    recent, running = finished(owner, 29), make_task(owner, status=S.RUNNING)
    everything = {t.pk: conversation(t, deltas=50) for t in (old, failed, recent, running)}

    result = compact_finished_events()

    assert (result.tasks, result.dropped, result.more) == (2, 102, False)
    for task in (old, failed):
        kept = [(k, p) for k, p in everything[task.pk] if not (k == "text" and p["partial"])]
        assert stored(task) == kept
        task.refresh_from_db()
        assert task.events_compacted_at is not None and task.events_dropped == 51
        # The order is the stream's: what stays keeps its seq.
        seqs = list(task.events.order_by("seq").values_list("seq", flat=True))
        assert seqs == [1, 52, 53, 54, 56, 57, 58, 59]
    for task in (recent, running):
        assert stored(task) == everything[task.pk]
        task.refresh_from_db()
        assert task.events_compacted_at is None and task.events_dropped == 0
    assert compact_finished_events() == type(result)(0, 0, more=False)  # nothing left


def test_a_round_is_bounded_and_the_next_one_goes_on_where_it_stopped(settings):
    settings.AGENT_EVENT_RETENTION_DAYS = 30
    owner = make_user()
    tasks = [finished(owner, 40 - i) for i in range(3)]
    for task in tasks:
        conversation(task, deltas=9)  # 10 deltas each

    rounds = []
    while True:
        rounds.append(compact_finished_events(rows_per_round=8, rows_per_batch=3))
        if not rounds[-1].more:
            break
        assert len(rounds) < 10
    assert [r.dropped for r in rounds] == [8, 8, 8, 6]
    assert sum(r.tasks for r in rounds) == 3
    for task in tasks:
        task.refresh_from_db()
        assert task.events_dropped == 10 and task.events_compacted_at is not None
        assert not task.events.filter(kind="text", payload__partial=True).exists()
        assert task.events.count() == 8


def test_retention_zero_keeps_everything(settings):
    settings.AGENT_EVENT_RETENTION_DAYS = 0
    task = finished(make_user(), 400)
    events = conversation(task, deltas=5)
    assert compact_finished_events().dropped == 0
    assert stored(task) == events


def test_beat_runs_it_and_the_admin_shows_what_was_dropped(settings, admin_client):
    schedule = settings.CELERY_BEAT_SCHEDULE["compact-finished-events"]
    assert schedule["task"] == "tasks_app.compact_finished_events"
    settings.AGENT_EVENT_RETENTION_DAYS = 30
    task = finished(make_user(), 31)
    conversation(task, deltas=20)
    compact_finished_events()
    page = admin_client.get(f"/admin/tasks_app/task/{task.pk}/change/").content.decode()
    assert "All 8 events (paginated)" in page
    assert "21 text deltas dropped by event retention" in page
    listing = admin_client.get("/admin/tasks_app/task/?events_compacted_at__isnull=False")
    assert f"/admin/tasks_app/task/{task.pk}/change/" in listing.content.decode()
