"""Dashboard pages: login, the task list, the new-task form, sessions."""

from __future__ import annotations

import pytest
from django.test import Client

from tasks_app.models import Source, Task, TaskStatus
from tests.factories import PASSWORD, make_session, make_task

EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture
def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_pages_need_login(db):
    client = Client()
    for url in ("/", "/tasks/new/", "/sessions/", "/tasks/1/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_login_with_password_then_logout_by_post(user):
    client = Client()
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200
    assert client.get("/accounts/logout/").status_code == 405
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_login_with_wrong_password_shows_error(user):
    response = Client().post("/accounts/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert b'data-testid="login-error"' in response.content


def test_list_shows_only_own_tasks(browser, user, other_user):
    mine = make_task(user, prompt="mine to see")
    make_task(other_user, prompt="someone else's")
    response = browser.get("/")
    assert response.status_code == 200
    assert list(response.context["page"].object_list) == [mine]
    assert b"mine to see" in response.content and b"someone else" not in response.content


def test_list_filters_by_status(browser, user):
    make_task(user, status=TaskStatus.QUEUED)
    running = make_task(user, status=TaskStatus.RUNNING)
    response = browser.get("/", {"status": "running"})
    assert list(response.context["page"].object_list) == [running]
    assert b'data-testid="filter-status"' in response.content


def test_list_filters_by_session(browser, user):
    session = make_session(user)
    in_session = make_task(user, session=session)
    make_task(user)
    response = browser.get("/", {"session": session.pk})
    assert list(response.context["page"].object_list) == [in_session]


def test_list_with_unknown_status_shows_error_and_all_tasks(browser, user):
    task = make_task(user)
    response = browser.get("/", {"status": "bogus"})
    assert response.status_code == 200
    assert b'data-testid="filter-errors"' in response.content
    assert list(response.context["page"].object_list) == [task]


def test_list_paginates_newest_first(browser, user):
    tasks = [make_task(user, prompt=f"task {i}") for i in range(27)]
    first = browser.get("/")
    second = browser.get("/", {"page": 2})
    assert list(first.context["page"].object_list) == tasks[::-1][:25]
    assert list(second.context["page"].object_list) == tasks[::-1][25:]
    assert b'data-testid="page-next"' in first.content


def test_list_renders_prompt_html_inert(browser, user):
    make_task(user, prompt=EVIL)
    content = browser.get("/").content.decode()
    assert "<script>alert" not in content and "<img src=x" not in content
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in content


def test_new_task_form_creates_web_task_and_opens_it(browser, user):
    response = browser.post(
        "/tasks/new/", {"prompt": "  fix the build\n", "max_turns": "5", "max_budget_usd": "0.5"}
    )
    task = Task.objects.get(owner=user)
    assert response.status_code == 302 and response["Location"] == f"/tasks/{task.pk}/"
    assert task.source == Source.WEB and task.prompt == "  fix the build\n"
    assert task.max_turns == 5 and str(task.max_budget_usd) == "0.5000"
    assert task.session.owner == user


def test_new_task_in_existing_session_continues_it(browser, user):
    session = make_session(user)
    browser.post("/tasks/new/", {"prompt": "more", "session": session.pk})
    assert Task.objects.get(owner=user).session == session


def test_new_task_page_preselects_a_session(browser, user):
    session = make_session(user, title="<b>bold</b> session")
    content = browser.get("/tasks/new/", {"session": session.pk}).content.decode()
    assert f'<option value="{session.pk}" selected>' in content
    assert "&lt;b&gt;bold&lt;/b&gt; session" in content


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   \n"}, "prompt"),
        ({"prompt": "a\x00b"}, "prompt"),
        ({"prompt": "x", "max_turns": "0"}, "max_turns"),
        ({"prompt": "x", "max_budget_usd": "-1"}, "max_budget_usd"),
        ({"prompt": "x", "session": "999999"}, "session"),
    ],
)
def test_new_task_invalid_input_is_a_form_error(browser, user, data, field):
    response = browser.post("/tasks/new/", data)
    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert not Task.objects.exists()


def test_new_task_in_other_users_session_is_refused(browser, other_user):
    session = make_session(other_user)
    response = browser.post("/tasks/new/", {"prompt": "x", "session": session.pk})
    assert response.status_code == 400 and "session" in response.context["form"].errors


def test_new_task_with_too_large_prompt_shows_413(browser, settings):
    settings.AGENT_MAX_PROMPT_BYTES = 10
    response = browser.post("/tasks/new/", {"prompt": "x" * 11})
    assert response.status_code == 413
    assert b'data-testid="form-errors"' in response.content
    assert b"the limit is 10 bytes" in response.content


def test_new_task_over_quota_shows_429(browser, user, settings):
    settings.AGENT_MAX_QUEUED_PER_USER = 1
    make_task(user)
    response = browser.post("/tasks/new/", {"prompt": "one more"})
    assert response.status_code == 429
    assert b"queued tasks" in response.content
    assert Task.objects.filter(owner=user).count() == 1


def test_new_task_requires_csrf(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post("/tasks/new/", {"prompt": "x"}).status_code == 403
    assert not Task.objects.exists()


def test_sessions_page_lists_own_sessions_with_their_tasks(browser, user, other_user):
    session = make_session(user, title="<i>refactor</i>")
    task = make_task(user, session=session, prompt=EVIL)
    make_session(other_user, title="not mine")
    response = browser.get("/sessions/")
    content = response.content.decode()
    assert [s.pk for s in response.context["page"].object_list] == [session.pk]
    assert f'data-live-task-id="{task.pk}"' in content and "not mine" not in content
    assert "&lt;i&gt;refactor&lt;/i&gt;" in content and "<script>alert" not in content
