"""The task page and its actions: cancel, retry, follow-up."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client

from tasks_app.models import Source, Task, TaskStatus
from tasks_app.services import cancellation
from tests.factories import make_task
from tests.tasks_app.test_dashboard import EVIL

TEST_IDS = [
    "task-page",
    "task-status",
    "connection-state",
    "task-prompt",
    "stream",
    "result-panel",
    "result-status",
    "result-cost",
    "result-turns",
    "result-duration",
    "result-error",
    "cancel-button",
    "retry-button",
    "follow-up-form",
    "follow-up-prompt",
    "follow-up-submit",
]


@pytest.fixture
def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_task_page_has_the_elements_scripts_rely_on(browser, user):
    task = make_task(user)
    content = browser.get(f"/tasks/{task.pk}/").content.decode()
    for test_id in TEST_IDS:
        assert f'data-testid="{test_id}"' in content, test_id
    assert f'data-ws-path="/ws/tasks/{task.pk}/"' in content
    assert 'role="log" aria-live="polite"' in content
    assert '<label for="follow_prompt">' in content


def test_task_page_of_other_user_is_404(browser, other_user):
    task = make_task(other_user)
    assert browser.get(f"/tasks/{task.pk}/").status_code == 404
    assert browser.get("/tasks/999999999999999999999/").status_code == 404


def test_task_page_renders_prompt_and_error_inert(browser, user):
    task = make_task(user, prompt=EVIL, status=TaskStatus.FAILED, error=EVIL)
    content = browser.get(f"/tasks/{task.pk}/").content.decode()
    assert "<script>alert" not in content and "<img src=x" not in content
    assert content.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;") == 2


def test_finished_task_page_shows_result_and_offers_retry_only(browser, user):
    task = make_task(
        user,
        status=TaskStatus.FAILED,
        error="The agent ran out of turns.",
        cost_usd=Decimal("0.012345"),
        num_turns=7,
        duration_ms=12_340,
    )
    content = browser.get(f"/tasks/{task.pk}/").content.decode()
    assert '<dd data-testid="result-cost">$0.0123</dd>' in content
    assert '<dd data-testid="result-turns">7</dd>' in content
    assert '<dd data-testid="result-duration">12.3 s</dd>' in content
    assert '<p class="result-error" data-testid="result-error">The agent ran' in content
    assert 'data-testid="cancel-form" hidden' in content
    assert 'data-testid="retry-form">' in content


def test_cancel_queued_task_cancels_it(browser, user):
    task = make_task(user)
    response = browser.post(f"/tasks/{task.pk}/cancel/", follow=True)
    task.refresh_from_db()
    assert task.status == TaskStatus.CANCELLED
    assert response.redirect_chain == [(f"/tasks/{task.pk}/", 302)]
    assert f"Task {task.pk} is cancelled." in response.content.decode()


def test_cancel_running_task_asks_its_worker(browser, user):
    task = make_task(user, status=TaskStatus.RUNNING, attempts=1)
    response = browser.post(f"/tasks/{task.pk}/cancel/", follow=True)
    assert "is being stopped" in response.content.decode()
    assert cancellation.stop_requested(task.pk)
    cancellation.clear(task.pk)


def test_cancel_finished_task_shows_the_conflict(browser, user):
    task = make_task(user, status=TaskStatus.SUCCEEDED)
    response = browser.post(f"/tasks/{task.pk}/cancel/", follow=True)
    assert "has already finished" in response.content.decode()
    task.refresh_from_db()
    assert task.status == TaskStatus.SUCCEEDED


def test_actions_on_other_users_task_are_404(browser, other_user):
    task = make_task(other_user, status=TaskStatus.FAILED)
    for action in ("cancel", "retry", "follow-up"):
        assert browser.post(f"/tasks/{task.pk}/{action}/", {"prompt": "x"}).status_code == 404
    task.refresh_from_db()
    assert task.status == TaskStatus.FAILED and Task.objects.count() == 1


def test_actions_need_post(browser, user):
    task = make_task(user)
    for action in ("cancel", "retry", "follow-up"):
        assert browser.get(f"/tasks/{task.pk}/{action}/").status_code == 405


def test_actions_need_csrf(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    task = make_task(user)
    for action in ("cancel", "retry", "follow-up"):
        assert client.post(f"/tasks/{task.pk}/{action}/", {"prompt": "x"}).status_code == 403
    task.refresh_from_db()
    assert task.status == TaskStatus.QUEUED


def test_retry_failed_task_opens_the_new_task(browser, user):
    task = make_task(user, status=TaskStatus.FAILED)
    response = browser.post(f"/tasks/{task.pk}/retry/")
    retry = Task.objects.get(retry_of=task)
    assert response.status_code == 302 and response["Location"] == f"/tasks/{retry.pk}/"
    assert retry.session == task.session and retry.source == Source.WEB


def test_retry_running_task_shows_the_conflict(browser, user):
    task = make_task(user, status=TaskStatus.RUNNING)
    response = browser.post(f"/tasks/{task.pk}/retry/", follow=True)
    assert "only failed, timed out, cancelled" in response.content.decode()
    assert not Task.objects.filter(retry_of=task).exists()


def test_follow_up_creates_task_in_same_session_and_opens_it(browser, user):
    task = make_task(user, status=TaskStatus.SUCCEEDED)
    response = browser.post(f"/tasks/{task.pk}/follow-up/", {"prompt": "now add tests"})
    follow_up = Task.objects.exclude(pk=task.pk).get()
    assert response.status_code == 302 and response["Location"] == f"/tasks/{follow_up.pk}/"
    assert follow_up.session == task.session and follow_up.prompt == "now add tests"
    assert follow_up.source == Source.WEB


def test_follow_up_blank_prompt_is_a_form_error(browser, user):
    task = make_task(user)
    response = browser.post(f"/tasks/{task.pk}/follow-up/", {"prompt": "  "})
    assert response.status_code == 400
    assert "prompt" in response.context["follow_up"].errors
    assert Task.objects.count() == 1


def test_follow_up_over_quota_shows_429_and_keeps_the_text(browser, user, settings):
    settings.AGENT_MAX_QUEUED_PER_USER = 1
    task = make_task(user)
    response = browser.post(f"/tasks/{task.pk}/follow-up/", {"prompt": "keep <this> text"})
    content = response.content.decode()
    assert response.status_code == 429
    assert 'data-testid="form-errors"' in content and "queued tasks" in content
    assert "keep &lt;this&gt; text</textarea>" in content
