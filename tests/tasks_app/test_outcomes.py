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
