import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from tasks_app.models import Source, Task, TaskEvent, TaskStatus
from tests.concurrency import race
from tests.conftest import token_client
from tests.factories import make_session, make_task, make_user

URL = "/api/tasks/"


def test_create_task_returns_queued_task_with_new_session(api, user):
    response = api.post(URL, {"prompt": "fix the build"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "queued"
    assert body["source"] == "api"
    task = Task.objects.get(pk=body["id"])
    assert task.owner == user and task.session.owner == user
    assert task.max_attempts == 3 and task.timeout_s == 1800 and task.max_turns == 30


def test_create_task_records_queued_status_event(api):
    task_id = api.post(URL, {"prompt": "hi"}, format="json").json()["id"]
    events = list(TaskEvent.objects.filter(task_id=task_id).values_list("seq", "kind", "payload"))
    assert events == [(1, "status", {"status": "queued"})]


def test_a_new_task_and_its_session_are_each_inserted_once_and_never_updated(api):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as statements:
        task_id = api.post(URL, {"prompt": "hi"}, format="json").json()["id"]
    unquoted = [q["sql"].replace('"', "") for q in statements]
    assert [sql for sql in unquoted if sql.startswith("UPDATE tasks_app_task ")] == []
    assert len([sql for sql in unquoted if sql.startswith("INSERT INTO tasks_app_task ")]) == 1
    task = Task.objects.select_related("session").get(pk=task_id)
    assert task.last_seq == 1 and task.events.get().seq == 1
    assert task.session.workspace.startswith(f"{task.session_id}-")
    assert task.created is not None and task.session.created is not None


def test_create_task_in_own_session_reuses_it(api, user):
    session = make_session(user)
    body = api.post(URL, {"prompt": "follow up", "session": session.pk}, format="json").json()
    assert body["session"] == session.pk


def test_create_task_in_other_users_session_is_404(api, other_user):
    session = make_session(other_user)
    response = api.post(URL, {"prompt": "x", "session": session.pk}, format="json")
    assert response.status_code == 404
    assert response.json() == {"detail": "Session not found."}
    assert not Task.objects.exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   \n"}, "prompt"),
        ({"prompt": "\u00a0\u3000\ufeff"}, "prompt"),
        ({"prompt": 42}, "prompt"),
        ({"prompt": "a\x00b"}, "prompt"),
        ({"prompt": "x", "priority": 11}, "priority"),
        ({"prompt": "x", "priority": "high"}, "priority"),
        ({"prompt": "x", "max_turns": 0}, "max_turns"),
        ({"prompt": "x", "max_budget_usd": "-1"}, "max_budget_usd"),
        ({"prompt": "x", "max_budget_usd": "1e400"}, "max_budget_usd"),
        ({"prompt": "x", "max_budget_usd": 10000.01}, "max_budget_usd"),
        ({"prompt": "x", "timeout_s": 999999}, "timeout_s"),
        ({"prompt": "x", "session": 2**70}, "session"),
    ],
)
def test_create_task_with_bad_fields_is_400_with_field_errors(api, payload, field):
    response = api.post(URL, payload, format="json")
    assert response.status_code == 400
    if field:
        assert field in response.json()
    assert not Task.objects.exists()


def test_create_task_rounds_budget_to_hundredth_of_a_cent(api):
    body = api.post(URL, {"prompt": "x", "max_budget_usd": 0.123456}, format="json").json()
    assert body["max_budget_usd"] == "0.1235"


def test_create_task_with_lone_surrogate_is_400(api):
    response = api.generic("POST", URL, '{"prompt": "\\ud800"}', content_type="application/json")
    assert response.status_code == 400
    assert "prompt" in response.json()


def test_create_task_with_malformed_json_is_400(api):
    response = api.generic("POST", URL, "{not json", content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]


def test_create_task_with_form_body_is_415(api):
    response = api.post(URL, {"prompt": "x"})  # multipart
    assert response.status_code == 415


def test_create_task_over_prompt_limit_is_413(api):
    response = api.post(URL, {"prompt": "é" * 51_201}, format="json")  # 102,402 bytes
    assert response.status_code == 413
    assert "102402 bytes" in response.json()["detail"]
    assert not Task.objects.exists()


def test_create_task_at_prompt_limit_is_accepted(api):
    assert api.post(URL, {"prompt": "x" * 102_400}, format="json").status_code == 201


@override_settings(AGENT_MAX_QUEUED_PER_USER=2)
def test_create_task_beyond_queued_quota_is_429(api, user):
    make_task(user)
    make_task(user, status=TaskStatus.RUNNING)
    assert api.post(URL, {"prompt": "one"}, format="json").status_code == 201
    response = api.post(URL, {"prompt": "two"}, format="json")
    assert response.status_code == 429
    assert "2 queued tasks" in response.json()["detail"]


def test_create_task_without_auth_is_401(db):
    response = APIClient().post(URL, {"prompt": "x"}, format="json")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


def test_create_task_with_session_auth_requires_csrf(user):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post(URL, {"prompt": "x"}, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]


def test_create_task_with_session_auth_and_csrf_is_web_source(user):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/accounts/login/")  # sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    response = client.post(URL, {"prompt": "x"}, format="json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201
    assert response.json()["source"] == Source.WEB


@pytest.mark.django_db(transaction=True)
@override_settings(AGENT_MAX_QUEUED_PER_USER=3)
def test_concurrent_creates_never_overrun_the_queued_quota():
    owner = make_user("racer")
    clients = [token_client(owner) for _ in range(8)]
    statuses = race(8, lambda i: clients[i].post(URL, {"prompt": "go"}, format="json").status_code)
    assert sorted(statuses) == [201] * 3 + [429] * 5
    assert Task.objects.filter(owner=owner, status=TaskStatus.QUEUED).count() == 3
