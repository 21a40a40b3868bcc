import pytest

from tasks_app.models import Task, TaskStatus
from tests.factories import make_task


@pytest.mark.parametrize("status", sorted(TaskStatus.retryable()))
def test_retry_creates_new_queued_task_in_same_session(api, user, status):
    task = make_task(user, status=status, prompt="try again", priority=3)
    response = api.post(f"/api/tasks/{task.pk}/retry/")
    assert response.status_code == 201
    body = response.json()
    assert body["retry_of"] == task.pk and body["status"] == "queued"
    assert body["session"] == task.session_id and body["priority"] == 3
    assert Task.objects.get(pk=body["id"]).prompt == "try again"


@pytest.mark.parametrize("status", [TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.SUCCEEDED])
def test_retry_of_unretryable_task_is_409(api, user, status):
    task = make_task(user, status=status)
    response = api.post(f"/api/tasks/{task.pk}/retry/")
    assert response.status_code == 409
    assert Task.objects.count() == 1


def test_retry_other_users_task_is_404(api, other_user):
    task = make_task(other_user, status=TaskStatus.FAILED)
    assert api.post(f"/api/tasks/{task.pk}/retry/").status_code == 404
