"""Who sees what: logging in and out, and one user's task invisible to another, in the page
and over its WebSocket."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.pages import (
    UI_MS,
    expect_status,
    log_in,
    log_in_as,
    make_browser_user,
    start_task,
)
from tests.fakes.anthropic_api import Text

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
]

# Opens the task's socket from the page, as task.js would, and reports what came back.
PROBE_TASK_SOCKET = """async (taskId) => new Promise(resolve => {
    const messages = [];
    const socket = new WebSocket(`ws://${location.host}/ws/tasks/${taskId}/`);
    const timer = setTimeout(() => resolve({code: null, messages}), 10000);
    socket.onmessage = message => messages.push(JSON.parse(message.data));
    socket.onclose = event => { clearTimeout(timer); resolve({code: event.code, messages}); };
})"""


def probe_task_socket(page: Page, task_id: int) -> dict[str, Any]:
    return page.evaluate(PROBE_TASK_SOCKET, task_id)


def test_log_out_returns_to_the_login_page_and_closes_the_dashboard(web, page):
    log_in_as(page, make_browser_user("alice"))

    page.get_by_test_id("logout-button").click()

    expect(page).to_have_url(re.compile(r"/accounts/login/$"))
    expect(page.get_by_test_id("login-form")).to_be_visible()
    expect(page.get_by_test_id("logout-button")).to_have_count(0)
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))


def test_log_in_with_a_wrong_password_shows_an_error(web, page):
    make_browser_user("alice")

    log_in(page, "alice", "not-the-password")

    expect(page.get_by_test_id("login-error")).to_be_visible(timeout=UI_MS)
    expect(page.locator("#id_username")).to_have_value("alice")
    expect(page.get_by_test_id("logout-button")).to_have_count(0)


def test_other_users_task_is_not_listed_not_shown_and_not_streamed(worker, fake_model, new_context):
    fake_model.script("[private]", Text("alice's private answer"))
    alice_page = new_context().new_page()
    log_in_as(alice_page, make_browser_user("alice"))
    task_id = start_task(alice_page, "[private] alice's secret prompt")
    expect_status(alice_page, "succeeded")
    bob_page = new_context().new_page()
    log_in_as(bob_page, make_browser_user("bob"))

    expect(bob_page.get_by_test_id("task-list-empty")).to_be_visible()
    expect(bob_page.locator(f'[data-live-task-id="{task_id}"]')).to_have_count(0)
    response = bob_page.goto(f"/tasks/{task_id}/")
    assert response is not None and response.status == 404
    assert "alice's secret prompt" not in bob_page.content()
    bob_page.goto("/")
    bobs = probe_task_socket(bob_page, task_id)
    alices = probe_task_socket(alice_page, task_id)

    assert bobs == {"code": 4404, "messages": []}
    # The same probe as the owner streams the task, so the refusal above is the server's.
    assert alices["code"] == 1000
    assert {"type": "end", "status": "succeeded"} in alices["messages"]
    texts = [m["payload"].get("text") for m in alices["messages"] if m.get("kind") == "text"]
    assert "alice's private answer" in texts
