from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from tasks_app.models import TaskStatus
from tasks_app.services import maintenance
from tests.factories import make_task

S = TaskStatus


def stale(seconds: int = 600):
    return timezone.now() - timedelta(seconds=seconds)


@pytest.fixture
def published():
    with (
        mock.patch("tasks_app.services.dispatch.publish_wakeup") as wakeup,
        mock.patch("tasks_app.services.dead_letters.publish") as dead_letter,
    ):
        yield wakeup, dead_letter


def test_reaper_requeues_a_stale_running_task_with_attempts_left(
    user, published, django_capture_on_commit_callbacks
):
    task = make_task(user, status=S.RUNNING, attempts=1, heartbeat_at=stale(), worker="w1")
    with django_capture_on_commit_callbacks(execute=True):
        assert maintenance.reap_stale_tasks() == 1
    task.refresh_from_db()
    assert task.status == S.QUEUED
    assert "w1 stopped sending heartbeats" in task.events.last().payload["reason"]
    assert published[0].call_count == 1


def test_reaper_dead_letters_a_stale_task_without_attempts_left(
    user, published, django_capture_on_commit_callbacks
):
    task = make_task(user, status=S.RUNNING, attempts=3, max_attempts=3, heartbeat_at=stale())
    with django_capture_on_commit_callbacks(execute=True):
        maintenance.reap_stale_tasks()
    task.refresh_from_db()
    assert task.status == S.DEAD_LETTER and "lost 3 times" in task.error
    (call,) = published[1].call_args_list
    assert call.kwargs["task_id"] == task.pk and call.kwargs["key"] == f"task:{task.pk}"


def test_reaper_leaves_tasks_with_a_recent_heartbeat(user, published):
    task = make_task(user, status=S.RUNNING, attempts=1, heartbeat_at=stale(2))
    assert maintenance.reap_stale_tasks() == 0
    task.refresh_from_db()
    assert task.status == S.RUNNING


def test_redispatch_publishes_only_the_shortfall(user, published):
    for _ in range(5):
        make_task(user, dispatched_at=stale())
    make_task(user, dispatched_at=timezone.now())  # just published: not overdue
    with mock.patch.object(maintenance, "agent_queue_length", return_value=2):
        assert maintenance.redispatch_queued_tasks() == 3
    assert published[0].call_count == 3


def test_redispatch_does_nothing_when_the_queue_holds_enough(user, published):
    make_task(user, dispatched_at=stale())
    with mock.patch.object(maintenance, "agent_queue_length", return_value=1):
        assert maintenance.redispatch_queued_tasks() == 0
    assert published[0].call_count == 0


def test_agent_queue_length_reads_the_real_broker(db):
    assert maintenance.agent_queue_length() >= 0
