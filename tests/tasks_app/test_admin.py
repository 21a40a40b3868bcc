import re

import pytest

from tasks_app.models import ApiToken, Task, TaskStatus
from tasks_app.services.events import NewEvent, append_events
from tasks_app.services.tokens import digest_of
from tests.factories import make_task, make_user


@pytest.fixture
def staff_client(client, db):
    admin = make_user("root", is_staff=True, is_superuser=True)
    client.force_login(admin)
    return client


def test_admin_requires_staff_login(client, user):
    assert client.get("/admin/tasks_app/task/").status_code == 302
    client.force_login(user)
    response = client.get("/admin/tasks_app/task/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?status__exact=queued",
        "?source__exact=api",
        "?q=hello",
        "?q=12345",
        "?created__year=2026",
    ],
)
def test_task_changelist_filters_and_search(staff_client, user, query):
    make_task(user, prompt="hello world")
    assert staff_client.get(f"/admin/tasks_app/task/{query}").status_code == 200


def test_task_search_by_id_finds_the_task(staff_client, user):
    task = make_task(user, prompt="needle")
    make_task(user, prompt="hay")
    page = staff_client.get(f"/admin/tasks_app/task/?q={task.pk}").content.decode()
    assert "1 result" in page


def test_task_page_shows_recent_events_and_link_to_all(staff_client, user):
    task = make_task(user)
    append_events(task, [NewEvent("text", {"text": "<b>streamed</b>"})], attempt=1)
    page = staff_client.get(f"/admin/tasks_app/task/{task.pk}/change/").content.decode()
    assert "&lt;b&gt;streamed&lt;/b&gt;" in page
    assert f"task__id__exact={task.pk}" in page
    events = staff_client.get(f"/admin/tasks_app/taskevent/?task__id__exact={task.pk}")
    assert events.status_code == 200


def test_admin_cancel_and_retry_actions_use_the_services(staff_client, user):
    queued = make_task(user)
    failed = make_task(user, status=TaskStatus.FAILED)
    url = "/admin/tasks_app/task/"
    staff_client.post(url, {"action": "cancel_tasks", "_selected_action": [queued.pk]})
    staff_client.post(url, {"action": "retry_tasks", "_selected_action": [failed.pk]})
    queued.refresh_from_db()
    assert queued.status == TaskStatus.CANCELLED
    assert Task.objects.get(retry_of=failed).status == TaskStatus.QUEUED


def test_admin_cancel_of_finished_task_warns_and_changes_nothing(staff_client, user):
    done = make_task(user, status=TaskStatus.SUCCEEDED)
    response = staff_client.post(
        "/admin/tasks_app/task/",
        {"action": "cancel_tasks", "_selected_action": [done.pk]},
        follow=True,
    )
    assert "already finished" in response.content.decode()
    done.refresh_from_db()
    assert done.status == TaskStatus.SUCCEEDED


def test_admin_token_creation_shows_the_key_once(staff_client, user):
    response = staff_client.post(
        "/admin/tasks_app/apitoken/add/", {"user": user.pk, "name": "ci"}, follow=True
    )
    key = re.search(r"<code>(ags_[\w-]+)</code>", response.content.decode()).group(1)
    token = ApiToken.objects.get()
    assert token.digest == digest_of(key) and token.name == "ci"
    again = staff_client.get(f"/admin/tasks_app/apitoken/{token.pk}/change/").content.decode()
    assert key not in again


@pytest.mark.parametrize(
    "model", ["agentsession", "webhookdelivery", "githubrepository", "apitoken", "taskevent"]
)
def test_other_changelists_load(staff_client, model):
    assert staff_client.get(f"/admin/tasks_app/{model}/").status_code == 200


def test_admin_requeues_a_dead_lettered_task_as_a_new_task(staff_client, user):
    from tasks_app.models import DeadLetter

    dead = make_task(user, status=TaskStatus.DEAD_LETTER)
    letter = DeadLetter.objects.create(key=f"task:{dead.pk}", job="j", reason="boom", task=dead)
    staff_client.post(
        "/admin/tasks_app/deadletter/", {"action": "requeue", "_selected_action": [letter.pk]}
    )
    letter.refresh_from_db()
    assert letter.requeued_as.retry_of_id == dead.pk
    response = staff_client.post(
        "/admin/tasks_app/deadletter/",
        {"action": "requeue", "_selected_action": [letter.pk]},
        follow=True,
    )
    assert "already requeued" in response.content.decode()
    assert Task.objects.filter(retry_of=dead).count() == 1
