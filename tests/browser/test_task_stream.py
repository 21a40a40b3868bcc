"""A task started from the dashboard streams its reply live into the page, then shows its
result; the page looks right on a phone."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tasks_app.models import Task, TaskStatus
from tests.browser.pages import (
    TASK_MS,
    UI_MS,
    expect_status,
    has_no_horizontal_overflow,
    log_in_as,
    make_browser_user,
    screenshot,
    start_task,
    submit_new_task,
)
from tests.fakes.anthropic_api import Hang, Text, ToolUse
from tests.live import wait_until

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
]

# ~50 chunks 0.15 s apart: several seconds in which the reply is visibly half-written.
SLOW_REPLY = "Streaming reply: " + " ".join(f"word{i:02d}" for i in range(40)) + "."


def test_streamed_text_shows_before_the_task_ends_then_the_result_panel(worker, fake_model, page):
    fake_model.script("[stream]", Text(SLOW_REPLY, chunk_chars=6, delay_s=0.15))
    log_in_as(page, make_browser_user("alice"))
    expect(page.get_by_test_id("task-list-empty")).to_be_visible()
    # With no tasks yet the list page opens its new-task form.
    task_id = submit_new_task(page, "[stream] tell me a long story")

    text = page.get_by_test_id("assistant-text")
    badge = page.get_by_test_id("task-status")
    expect(text).to_contain_text(SLOW_REPLY[:12], timeout=TASK_MS)
    # One reading, not a retried expectation: the text is there *while* the task runs.
    assert badge.get_attribute("data-status") == "running"
    assert "streaming" in (text.get_attribute("class") or "")
    assert SLOW_REPLY not in text.inner_text()

    expect_status(page, "succeeded")
    expect(text).to_have_text(SLOW_REPLY)
    expect(text).not_to_have_class(re.compile(r"\bstreaming\b"))
    expect(page.get_by_test_id("result-status")).to_have_text("Succeeded")
    expect(page.get_by_test_id("result-cost")).to_have_text(re.compile(r"^\$\d+\.\d{4}$"))
    expect(page.get_by_test_id("result-turns")).to_have_text("1")
    expect(page.get_by_test_id("result-duration")).to_have_text(re.compile(r"^\d+\.\d s$"))
    expect(page.get_by_test_id("result-text")).to_have_text(SLOW_REPLY)
    expect(page.get_by_test_id("result-event")).to_contain_text("Finished · 1 turns")
    expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "finished")
    expect(page.get_by_test_id("task-attempts")).to_have_text("1 of 3")
    expect(page.get_by_test_id("cancel-form")).to_be_hidden()
    task = Task.objects.get(pk=task_id)
    assert task.status == TaskStatus.SUCCEEDED and task.result_text == SLOW_REPLY
    screenshot(page, "task-page")

    page.get_by_test_id("nav-tasks").click()
    row = page.locator(f'[data-testid="task-row"][data-live-task-id="{task_id}"]')
    expect(row.get_by_test_id("task-status")).to_have_attribute("data-status", "succeeded")
    screenshot(page, "task-list")


def test_follow_up_starts_a_new_task_in_the_same_session_and_opens_it(worker, fake_model, page):
    fake_model.script("[follow]", Text("Noted: the code word is tangerine."), Text("tangerine"))
    log_in_as(page, make_browser_user("alice"))
    first_id = start_task(page, "[follow] remember tangerine")
    expect_status(page, "succeeded")
    first_session = page.get_by_test_id("task-session").get_attribute("href")

    page.get_by_test_id("follow-up-prompt").fill("what was the code word?")
    page.get_by_test_id("follow-up-submit").click()

    page.wait_for_url(lambda url: not url.endswith(f"/tasks/{first_id}/"), timeout=UI_MS)
    follow_up = Task.objects.get(pk=int(page.url.rstrip("/").rsplit("/", 1)[1]))
    assert follow_up.pk != first_id
    assert follow_up.session_id == Task.objects.get(pk=first_id).session_id
    expect(page.get_by_test_id("task-prompt")).to_have_text("what was the code word?")
    expect(page.get_by_test_id("task-session")).to_have_attribute("href", first_session or "")
    expect_status(page, "succeeded")
    expect(page.get_by_test_id("result-text")).to_have_text("tangerine")


def test_task_page_at_phone_width_shows_stream_and_cancel_without_horizontal_scroll(
    worker, fake_model, new_context
):
    # An unbreakable run of characters is what usually pushes a phone layout sideways. The
    # reply's tool call and the hang after it keep the task running while the page is read.
    reply = "Looking at https://example.invalid/" + "x" * 120 + " first."
    fake_model.script("[phone]", ToolUse("Glob", {"pattern": "**/*.md"}, text=reply), Hang())
    phone = new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    ).new_page()
    log_in_as(phone, make_browser_user("alice"))
    start_task(phone, "[phone] a prompt with a long path " + "/very/long/path" * 10)

    stream = phone.get_by_test_id("stream")
    expect(stream.locator('[data-kind="tool_result"]')).to_have_count(1, timeout=TASK_MS)
    expect(phone.get_by_test_id("assistant-text")).to_have_text(reply)
    expect(stream).to_be_visible()
    cancel = phone.get_by_test_id("cancel-button")
    expect(cancel).to_be_visible()
    expect(cancel).to_be_in_viewport()
    assert has_no_horizontal_overflow(phone)
    screenshot(phone, "task-page-phone")

    cancel.tap()
    expect_status(phone, "cancelled", timeout_ms=UI_MS)
    assert has_no_horizontal_overflow(phone)
    phone.get_by_test_id("nav-tasks").click()
    expect(phone.get_by_test_id("task-row")).to_have_count(1)
    assert has_no_horizontal_overflow(phone)
    screenshot(phone, "task-list-phone")


def test_cancel_from_the_task_page_stops_a_hanging_task(worker, fake_model, page):
    fake_model.script("[hang]", Hang())
    log_in_as(page, make_browser_user("alice"))
    task_id = start_task(page, "[hang] wait forever")
    expect_status(page, "running")
    # The CLI is really waiting on the model, not still starting up.
    wait_until(lambda: fake_model.in_flight == 1, TASK_MS / 1000, "the model request")

    page.get_by_test_id("cancel-button").click()

    expect(page.get_by_test_id("messages")).to_contain_text(f"Task {task_id} is")
    expect_status(page, "cancelled", timeout_ms=UI_MS)
    expect(page.get_by_test_id("result-status")).to_have_text("Cancelled")
    expect(page.get_by_test_id("cancel-form")).to_be_hidden()
    expect(page.get_by_test_id("retry-form")).to_be_visible()
    expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "finished")
    expect(page.get_by_test_id("status-event").last).to_contain_text("Status: Cancelled")
    assert Task.objects.get(pk=task_id).status == TaskStatus.CANCELLED
