"""What browser tests do on the dashboard's pages: users, log in, start a task, read the
stream, screenshots. Selectors are the pages' data-testid attributes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.models import AbstractUser
from playwright.sync_api import Page, expect

from tests.factories import PASSWORD, make_user
from tests.live import ARTIFACTS, wait_until

SCREENSHOTS = ARTIFACTS / "screenshots"
# A task through the real CLI: its start-up, the scripted reply, the worker's writes.
TASK_MS = 60_000
# Page loads, form posts and live updates of a running page.
UI_MS = 15_000
# A web server stopped and started again, then the page's backoff before it reconnects.
RECONNECT_MS = 45_000
TASK_URL = re.compile(r"/tasks/(\d+)/$")


def make_browser_user(username: str) -> AbstractUser:
    """A user who can log in to the web server with PASSWORD.

    tests/conftest.py makes this process hash passwords with MD5, which the server (the
    production settings, PBKDF2 and friends) cannot verify; so the stored hash is made by
    the server's default hasher directly, leaving both processes' settings alone.
    """
    user = make_user(username)
    hasher = PBKDF2PasswordHasher()
    user.password = hasher.encode(PASSWORD, hasher.salt())
    user.save(update_fields=["password"])
    return user


def log_in(page: Page, username: str, password: str = PASSWORD) -> None:
    """Through the real login form, as a person would."""
    page.goto("/accounts/login/")
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(password)
    page.get_by_test_id("login-submit").click()


def log_in_as(page: Page, user: AbstractUser) -> None:
    log_in(page, user.get_username())
    expect(page.get_by_test_id("logout-button")).to_be_visible(timeout=UI_MS)


def submit_new_task(page: Page, prompt: str) -> int:
    """Fill and send the new-task form on the current page; returns the new task's id."""
    page.get_by_test_id("new-task-prompt").fill(prompt)
    page.get_by_test_id("new-task-submit").click()
    page.wait_for_url(TASK_URL, timeout=UI_MS)
    return task_id_of(page)


def start_task(page: Page, prompt: str) -> int:
    page.goto("/tasks/new/")
    return submit_new_task(page, prompt)


def task_id_of(page: Page) -> int:
    task_id = page.get_by_test_id("task-page").get_attribute("data-task-id")
    assert task_id is not None
    return int(task_id)


def expect_status(page: Page, status: str, timeout_ms: float = TASK_MS) -> None:
    expect(page.get_by_test_id("task-status")).to_have_attribute(
        "data-status", status, timeout=timeout_ms
    )


def stream_entries(page: Page) -> list[dict[str, Any]]:
    """The stream's entries in page order: seq, kind and test id of each."""
    return page.get_by_test_id("stream").evaluate(
        """stream => Array.from(stream.children).map(entry => ({
            seq: entry.dataset.seq === undefined ? null : Number(entry.dataset.seq),
            kind: entry.dataset.kind || null,
            testid: entry.dataset.testid || null,
        }))"""
    )


def wait_for_script(page: Page, expression: str, timeout_ms: float, what: str) -> Any:
    """Poll a JavaScript expression until it is truthy. Not page.wait_for_function: that
    compiles its predicate with eval in the page, which the site's CSP refuses."""
    return wait_until(lambda: page.evaluate(expression), timeout_ms / 1000, what)


def has_no_horizontal_overflow(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
