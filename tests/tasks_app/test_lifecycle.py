import pytest

from tasks_app.models import Task, TaskStatus
from tasks_app.services.lifecycle import IllegalTransition, claim_task, transition
from tests.concurrency import race
from tests.factories import make_task, make_user

S = TaskStatus


@pytest.mark.django_db(transaction=True)
def test_racing_claims_on_one_task_have_exactly_one_winner():
    owner = make_user("claimer")
    for _ in range(10):
        task = make_task(owner)
        won = race(12, lambda i, pk=task.pk: claim_task(Task.objects.get(pk=pk), worker=f"w{i}"))
        assert won.count(True) == 1
        task.refresh_from_db()
        assert task.status == S.RUNNING and task.attempts == 1
        assert task.worker == f"w{won.index(True)}"
        assert list(task.events.values_list("seq", flat=True)) == [1]


@pytest.mark.django_db(transaction=True)
def test_racing_cancel_and_claim_leave_one_consistent_outcome():
    owner = make_user("canceller")
    for _ in range(10):
        task = make_task(owner)

        def act(i: int, pk: int = task.pk) -> bool:
            fresh = Task.objects.get(pk=pk)
            if i % 2:
                return claim_task(fresh, worker="w")
            return transition(fresh, to=S.CANCELLED, from_statuses=[S.QUEUED])

        assert race(8, act).count(True) == 1
        task.refresh_from_db()
        assert task.status in {S.RUNNING, S.CANCELLED}
        assert task.events.count() == 1


@pytest.mark.parametrize("terminal", sorted(S.terminal()))
def test_terminal_task_never_moves_again(user, terminal):
    task = make_task(user, status=terminal)
    assert not claim_task(task, worker="late")
    for target, sources in [(S.CANCELLED, [S.QUEUED]), (S.SUCCEEDED, [S.RUNNING])]:
        assert not transition(task, to=target, from_statuses=sources)
    task.refresh_from_db()
    assert task.status == terminal and task.events.count() == 0


@pytest.mark.parametrize("terminal", sorted(S.terminal()))
def test_transition_out_of_a_terminal_status_is_illegal(user, terminal):
    task = make_task(user, status=terminal)
    with pytest.raises(IllegalTransition):
        transition(task, to=S.QUEUED, from_statuses=[terminal])


def test_illegal_transition_queued_to_succeeded_is_refused(user):
    with pytest.raises(IllegalTransition):
        transition(make_task(user), to=S.SUCCEEDED, from_statuses=[S.QUEUED])


def test_claim_respects_run_after_backoff(user):
    from datetime import timedelta

    from django.utils import timezone

    task = make_task(user, run_after=timezone.now() + timedelta(minutes=5))
    assert not claim_task(task, worker="early")
    Task.objects.filter(pk=task.pk).update(run_after=timezone.now() - timedelta(seconds=1))
    assert claim_task(task, worker="due")


def test_successful_transition_stores_status_event_with_error(user):
    task = make_task(user, status=S.RUNNING, attempts=2)
    assert transition(
        task, to=S.FAILED, from_statuses=[S.RUNNING], updates={"error": "The CLI crashed."}
    )
    event = task.events.get()
    assert (event.kind, event.attempt) == ("status", 2)
    assert event.payload == {"status": "failed", "error": "The CLI crashed."}
    assert task.finished_at is not None


def test_a_status_push_shows_the_task_as_its_transition_left_it(
    user, monkeypatch, django_capture_on_commit_callbacks
):
    from tasks_app.services import broadcast

    pushed: list[tuple[str, dict]] = []
    monkeypatch.setattr(broadcast, "_group_send", lambda group, msg: pushed.append((group, msg)))

    def read_again(task_id: int) -> None:
        raise AssertionError("the transition's own refresh should serve the push")

    monkeypatch.setattr(broadcast, "_fresh_snapshot", read_again)
    task = make_task(user, status=S.RUNNING, attempts=1)
    with django_capture_on_commit_callbacks(execute=True):
        assert transition(
            task, to=S.SUCCEEDED, from_statuses=[S.RUNNING], updates={"result_text": "done"}
        )
    to_owner = [msg for group, msg in pushed if group == f"user.{user.pk}"]
    assert len(to_owner) == 1
    snapshot = to_owner[0]["task"]
    assert snapshot["status"] == "succeeded" and snapshot["result_text"] == "done"
    assert snapshot["finished_at"] is not None and snapshot["attempts"] == 1


def test_the_queued_push_of_a_new_task_equals_the_task_read_back(
    user, monkeypatch, django_capture_on_commit_callbacks
):
    from decimal import Decimal

    from tasks_app.models import Source
    from tasks_app.services import broadcast
    from tasks_app.services.tasks import task_create

    pushed: list[tuple[str, dict]] = []
    monkeypatch.setattr(broadcast, "_group_send", lambda group, msg: pushed.append((group, msg)))
    with django_capture_on_commit_callbacks(execute=True):
        task = task_create(
            owner=user, prompt="hello", source=Source.API, max_budget_usd=Decimal("1.5")
        )
    [snapshot] = [msg["task"] for group, msg in pushed if group == f"user.{user.pk}"]
    assert snapshot == broadcast.task_snapshot(broadcast.snapshot_queryset().get(pk=task.pk))
    assert snapshot["status"] == "queued" and snapshot["max_budget_usd"] is not None
