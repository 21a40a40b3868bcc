import pytest

from tasks_app.models import TaskStatus
from tasks_app.services import cancellation
from tests.factories import make_task


def test_cancel_queued_task_cancels_at_once(api, user):
    task = make_task(user)
    response = api.post(f"/api/tasks/{task.pk}/cancel/")
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    task.refresh_from_db()
    assert task.status == TaskStatus.CANCELLED and task.finished_at is not None
    assert task.events.last().payload == {"status": "cancelled", "reason": "cancelled by user"}


def test_cancel_running_task_flags_it_for_its_worker(api, user):
    task = make_task(user, status=TaskStatus.RUNNING, attempts=1)
    response = api.post(f"/api/tasks/{task.pk}/cancel/")
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "running" and body["cancel_requested_at"] is not None
    assert cancellation.stop_requested(task.pk)
    cancellation.clear(task.pk)


@pytest.mark.parametrize("status", sorted(TaskStatus.terminal()))
def test_cancel_finished_task_is_409(api, user, status):
    task = make_task(user, status=status)
    response = api.post(f"/api/tasks/{task.pk}/cancel/")
    assert response.status_code == 409
    assert "already finished" in response.json()["detail"]
    task.refresh_from_db()
    assert task.status == status


def test_cancel_other_users_task_is_404(api, other_user):
    task = make_task(other_user)
    assert api.post(f"/api/tasks/{task.pk}/cancel/").status_code == 404
    task.refresh_from_db()
    assert task.status == TaskStatus.QUEUED
