import pytest
from rest_framework.test import APIClient

from tests.factories import make_task


def test_detail_returns_own_task(api, user):
    task = make_task(user, prompt="explain the code")
    body = api.get(f"/api/tasks/{task.pk}/").json()
    assert body["id"] == task.pk and body["prompt"] == "explain the code"


def test_detail_of_other_users_task_is_404(api, other_user):
    task = make_task(other_user)
    response = api.get(f"/api/tasks/{task.pk}/")
    assert response.status_code == 404
    assert response.json() == {"detail": "Task not found."}


@pytest.mark.parametrize("task_id", ["999999", "9" * 18, "9" * 40, "0", "-1", "abc"])
def test_detail_of_missing_or_impossible_id_is_404(api, task_id):
    assert api.get(f"/api/tasks/{task_id}/").status_code == 404


def test_detail_without_auth_is_401(user):
    task = make_task(user)
    assert APIClient().get(f"/api/tasks/{task.pk}/").status_code == 401


def test_detail_with_wrong_token_is_401(user):
    task = make_task(user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token ags_wrong")
    response = client.get(f"/api/tasks/{task.pk}/")
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid or revoked token."}
