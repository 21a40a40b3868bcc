"""The ORM's statements without its per-call cost: the same rows, the same values."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from tasks_app.compiled_sql import get_by_pk, update_and_refresh, update_matching
from tasks_app.models import AgentSession, GitHubRepository, Task, TaskStatus
from tasks_app.services import broadcast
from tasks_app.services.claims import claim_next_task
from tasks_app.services.lifecycle import transition
from tests.factories import make_session, make_task

S = TaskStatus


def _row(task: Task) -> dict:
    return Task.objects.filter(pk=task.pk).values().get()


def test_update_matching_writes_what_the_orms_update_writes(user):
    ours, theirs = make_task(user), make_task(user)
    values = {
        "changed_files": [{"path": "a.py", "insertions": 1, "deletions": 0}],
        "commits": [["abc", "a commit"]],
        "cost_usd": Decimal("0.0123"),
        "result_text": "done\u00e9",
        "files_changed": 1,
    }
    assert update_matching(Task, {"pk": ours.pk}, values) == 1
    Task.objects.filter(pk=theirs.pk).update(**values)
    written, expected = _row(ours), _row(theirs)
    for name in values:
        assert written[name] == expected[name] == values[name]


def test_update_matching_touches_only_rows_matching_every_column(user):
    task = make_task(user, status=S.RUNNING, attempts=2)
    other = make_task(user, status=S.RUNNING, attempts=2)
    match = {"pk": task.pk, "status": S.RUNNING, "attempts": 1}
    assert update_matching(Task, match, {"pid": 41}) == 0
    assert update_matching(Task, {**match, "attempts": 2}, {"pid": 42}) == 1
    assert _row(task)["pid"] == 42 and _row(other)["pid"] is None


def test_update_matching_stores_bytes_as_the_orm_reads_them(user):
    session = make_session(user)
    assert update_matching(AgentSession, {"pk": session.pk}, {"transcript": b"\x00\xffz"}) == 1
    assert bytes(AgentSession.objects.get(pk=session.pk).transcript) == b"\x00\xffz"


def test_update_matching_matches_none_as_null_as_the_orm_does(user):
    unset, cancelled = make_task(user), make_task(user)
    Task.objects.filter(pk=cancelled.pk).update(cancel_requested_at=cancelled.created)
    for task in (unset, cancelled):
        assert (
            update_matching(Task, {"pk": task.pk, "cancel_requested_at": None}, {"error": "beat"})
            == Task.objects.filter(pk=task.pk, cancel_requested_at=None).count()
        )
    assert (_row(unset)["error"], _row(cancelled)["error"]) == ("beat", "")


def test_update_matching_refuses_to_update_the_key(user):
    with pytest.raises(ValueError, match="ORM"):
        update_matching(Task, {"pk": 1}, {"id": 2})


def test_update_and_refresh_sets_every_field_from_the_updated_row_in_one_statement(user):
    task = make_task(user, attempts=1)
    stale = Task.objects.get(pk=task.pk)
    rows = Task.objects.filter(pk=task.pk, status=S.QUEUED)
    with CaptureQueriesContext(connection) as statements:
        assert update_and_refresh(stale, rows, {"status": S.RUNNING, "attempts": F("attempts") + 1})
    assert len(statements) == 1 and "RETURNING" in statements[0]["sql"]
    fresh = Task.objects.get(pk=task.pk)
    for field in Task._meta.concrete_fields:
        assert getattr(stale, field.attname) == getattr(fresh, field.attname), field.name
    assert stale.attempts == 2 and stale.status == S.RUNNING


def test_update_and_refresh_keeps_cached_relations_and_leaves_a_lost_race_untouched(user):
    task = Task.objects.select_related("session").get(pk=make_task(user).pk)
    rows = Task.objects.filter(pk=task.pk)
    assert update_and_refresh(task, rows, {"error": "x"})
    with CaptureQueriesContext(connection) as statements:
        assert task.session.owner_id == user.pk
    assert len(statements) == 0
    gone = Task.objects.filter(pk=task.pk, status=S.SUCCEEDED)
    assert not update_and_refresh(task, gone, {"error": "y"})
    assert task.error == "x" and _row(task)["error"] == "x"


def test_update_and_refresh_completes_a_task_loaded_with_deferred_fields(user):
    partial = Task.objects.only("pk").get(pk=make_task(user, prompt="the prompt").pk)
    assert update_and_refresh(partial, Task.objects.filter(pk=partial.pk), {"error": "x"})
    with CaptureQueriesContext(connection) as statements:
        assert (partial.prompt, partial.error) == ("the prompt", "x")
    assert not partial.get_deferred_fields() and len(statements) == 0


def test_get_by_pk_leaves_deferred_fields_unread(user):
    session = make_session(user)
    AgentSession.objects.filter(pk=session.pk).update(transcript=b"x" * 1000)
    found = get_by_pk(AgentSession, session.pk, defer=AgentSession.STORED_FILES)
    assert found is not None and found.pk == session.pk and found.owner_id == user.pk
    assert found.get_deferred_fields() == set(AgentSession.STORED_FILES)
    assert bytes(found.transcript) == b"x" * 1000  # read when asked for
    assert get_by_pk(AgentSession, 10**9) is None


def _selected_columns(statements: CaptureQueriesContext) -> str:
    return " ".join(q["sql"] for q in statements if q["sql"].lstrip().upper().startswith("SELECT"))


def test_a_claim_reads_its_session_without_the_stored_files(user):
    session = make_session(user)
    AgentSession.objects.filter(pk=session.pk).update(
        transcript=b"t" * 10_000, workspace_bundle=b"b" * 10_000
    )
    repository = GitHubRepository.objects.create(full_name="acme/app", owner=user)
    AgentSession.objects.filter(pk=session.pk).update(github_repository=repository)
    queued = make_task(user, session=session)
    with CaptureQueriesContext(connection) as statements:
        claimed = claim_next_task(worker="w")
    assert claimed is not None and claimed.pk == queued.pk
    selected = _selected_columns(statements)
    assert '"transcript"' not in selected and '"workspace_bundle"' not in selected
    with CaptureQueriesContext(connection) as statements:
        assert claimed.session.github_repository == repository
    assert len(statements) == 0  # loaded with the claim, for its status push
    assert claimed.status == S.RUNNING and claimed.attempts == 1


def test_a_transition_reads_nothing_back_after_its_update(user):
    task = broadcast.snapshot_queryset().get(pk=make_task(user, status=S.RUNNING).pk)
    with CaptureQueriesContext(connection) as statements:
        assert transition(task, to=S.SUCCEEDED, from_statuses=[S.RUNNING])
    task_reads = [q["sql"] for q in statements if 'FROM "tasks_app_task"' in q["sql"]]
    assert task_reads == [] and task.finished_at is not None


def test_the_snapshot_query_leaves_the_sessions_stored_files_unread(user):
    task = make_task(user)
    sql = str(broadcast.snapshot_queryset().filter(pk=task.pk).query)
    assert "transcript" not in sql and "workspace_bundle" not in sql
    assert "github_repository" in sql


def test_insert_all_stores_what_bulk_create_stores_in_order_with_keys(user):
    from tasks_app.compiled_sql import insert_all
    from tasks_app.models import TaskEvent

    ours, theirs = make_task(user), make_task(user)
    payloads = [{"text": f"line {i}\x00", "cost": Decimal("0.5"), "n": [i]} for i in range(400)]

    def events(task: Task) -> list[TaskEvent]:
        return [
            TaskEvent(task=task, seq=i + 1, attempt=1, kind="text", payload=p)
            for i, p in enumerate(payloads)
        ]

    inserted = events(ours)
    insert_all(inserted)  # more rows than one SQLite statement takes
    TaskEvent.objects.bulk_create(events(theirs))
    stored = list(TaskEvent.objects.filter(task=ours).order_by("seq"))
    expected = list(TaskEvent.objects.filter(task=theirs).order_by("seq"))
    assert [e.pk for e in inserted] == [e.pk for e in stored]
    assert all(not e._state.adding and e.created is not None for e in inserted)
    columns = ("seq", "attempt", "kind", "payload")
    assert [[getattr(e, c) for c in columns] for e in stored] == [
        [getattr(e, c) for c in columns] for e in expected
    ]
    assert stored[0].payload["text"] == "line 0\ufffd"
    assert [e.created for e in stored] == [e.created for e in inserted]


def test_column_by_pk_reads_one_column_and_misses_as_get_does(user):
    from tasks_app.compiled_sql import column_by_pk

    task = make_task(user, last_seq=17)
    assert column_by_pk(Task, task.pk, "last_seq") == 17
    assert column_by_pk(Task, task.pk, "prompt") == "say hello"
    with pytest.raises(Task.DoesNotExist):
        column_by_pk(Task, 10**9, "last_seq")


def test_a_heartbeat_beats_while_running_and_tells_a_cancel_from_a_loss(user):
    from django.utils import timezone

    from tasks_app.services.monitor import AttemptMonitor, StopCause

    task = make_task(user, status=S.RUNNING, attempts=2)
    monitor = AttemptMonitor(task=task, attempt=2)
    assert monitor.beat() is None and _row(task)["heartbeat_at"] is not None
    Task.objects.filter(pk=task.pk).update(cancel_requested_at=timezone.now())
    assert monitor.beat() is StopCause.CANCEL
    Task.objects.filter(pk=task.pk).update(cancel_requested_at=None, attempts=3)
    assert monitor.beat() is StopCause.LOST
