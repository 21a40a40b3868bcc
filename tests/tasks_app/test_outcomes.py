import pytest
from django.test import override_settings

from tasks_app.services.outcomes import backoff_delay_s


@override_settings(AGENT_RETRY_BACKOFF_S=10, AGENT_RETRY_BACKOFF_MAX_S=600)
@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 10), (2, 20), (3, 40), (8, 600), (20, 600)])
def test_backoff_grows_exponentially_with_equal_jitter_and_a_cap(attempt, ceiling):
    delays = [backoff_delay_s(attempt) for _ in range(200)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 100  # jittered, not fixed


def test_an_ending_wakes_a_worker_only_while_something_is_queued(
    user, monkeypatch, django_capture_on_commit_callbacks
):
    from tasks_app.models import TaskStatus
    from tasks_app.services import dispatch
    from tasks_app.services.outcomes import after_ending
    from tests.factories import make_task

    woken: list[float | None] = []
    monkeypatch.setattr(dispatch, "publish_wakeup", lambda countdown=None: woken.append(countdown))
    ended = make_task(user, status=TaskStatus.SUCCEEDED)
    with django_capture_on_commit_callbacks(execute=True):
        after_ending(ended, TaskStatus.SUCCEEDED, None)
    assert woken == []
    make_task(user, status=TaskStatus.QUEUED)
    with django_capture_on_commit_callbacks(execute=True):
        after_ending(ended, TaskStatus.SUCCEEDED, None)
    assert woken == [None]


def _succeeded() -> object:
    from decimal import Decimal

    from cli_exec.claude import RunSummary, Verdict

    return RunSummary(Verdict.SUCCEEDED, "", "done", "cli-1", Decimal("0.01"), 5, 7, 1, 12, None)


def test_an_ending_stores_its_last_events_and_its_status_in_one_task_update(
    user, django_capture_on_commit_callbacks
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tasks_app.models import TaskStatus
    from tasks_app.services.events import NewEvent
    from tasks_app.services.outcomes import finish_attempt
    from tests.factories import make_task

    task = make_task(user, status=TaskStatus.RUNNING, attempts=1, last_seq=3)
    final = [NewEvent("text", {"text": "a"}), NewEvent("result", {"result": "done"})]
    with CaptureQueriesContext(connection) as statements:
        status = finish_attempt(task, attempt=1, summary=_succeeded(), final_events=final)
    assert status is TaskStatus.SUCCEEDED
    events = list(task.events.order_by("seq").values_list("seq", "kind", "attempt"))
    assert events == [(4, "text", 1), (5, "result", 1), (6, "status", 1)]
    task.refresh_from_db()
    assert task.last_seq == 6 and task.result_text == "done" and task.cost_usd is not None
    unquoted = [q["sql"].replace('"', "") for q in statements]
    task_updates = [sql for sql in unquoted if sql.startswith("UPDATE tasks_app_task ")]
    assert len(task_updates) == 1


def test_a_lost_attempts_ending_stores_nothing(user):
    from tasks_app.models import TaskStatus
    from tasks_app.services.events import NewEvent
    from tasks_app.services.outcomes import finish_attempt
    from tests.factories import make_task

    task = make_task(user, status=TaskStatus.RUNNING, attempts=2, last_seq=3)
    final = [NewEvent("text", {"text": "late"})]
    assert finish_attempt(task, attempt=1, summary=_succeeded(), final_events=final) is None
    task.refresh_from_db()
    assert task.status == TaskStatus.RUNNING and task.last_seq == 3
    assert not task.events.exists()
