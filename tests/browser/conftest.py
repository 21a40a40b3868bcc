"""Fixtures for browser tests: one Chromium for the package, a fresh context per test, and
the whole stack per test (fake model, uvicorn web server, Celery worker running the CLI)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.live import LiveProcess, asgi_server

# The fake model and a real worker running the CLI, as the engine tests have them.
from tests.tasks_app.engine.conftest import (  # noqa: F401 - fixtures
    fake_model,
    worker,
    worker_env,
    workspace_root,
)

CHROMIUM = "/usr/bin/chromium"
# The background-networking flags matter: this sandbox's closed network refuses the
# connections Chromium makes on its own, and Playwright must never download a browser.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ACTION_TIMEOUT_MS = 15_000


@dataclass
class WebServer:
    url: str
    live: LiveProcess

    @property
    def port(self) -> int:
        port = urlsplit(self.url).port
        assert port is not None
        return port


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """One headless Chromium for all browser tests, gone before any other package runs.

    The sync API keeps Playwright's event loop running on this thread (in another
    greenlet), so Django's guard against the ORM in async code would refuse our plain
    synchronous queries; they are not async code, hence the opt-out, for this package only.
    Package scope also matters for the rest of the suite: with that loop alive,
    async_to_sync on this thread would fail.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            try:
                yield chromium
            finally:
                chromium.close()


@pytest.fixture
def web(transactional_db: None, worker_env: dict[str, str]) -> Iterator[WebServer]:  # noqa: F811
    # The worker's environment: one deployment, one set of settings.
    with asgi_server(worker_env) as (url, live):
        yield WebServer(url, live)


def watch_for_page_faults(page: Page, faults: list[str]) -> None:
    """Uncaught script errors and Content-Security-Policy refusals: a page that breaks
    either way may still look right to the assertions of the test at hand."""
    page.on("pageerror", lambda error: faults.append(f"{page.url}: {error}"))
    page.on(
        "console",
        lambda message: (
            faults.append(f"{page.url}: {message.text}")
            if "Content Security Policy" in message.text
            else None
        ),
    )


@pytest.fixture
def new_context(browser: Browser, web: WebServer) -> Iterator[Callable[..., BrowserContext]]:
    """Opens contexts (separate cookie jars: separate users) on the web server; all are
    closed after the test, even when it fails, and none may have had a page fault."""
    opened: list[BrowserContext] = []
    faults: list[str] = []

    def open_context(**options: Any) -> BrowserContext:
        context = browser.new_context(base_url=web.url, **options)
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        context.on("page", lambda page: watch_for_page_faults(page, faults))
        opened.append(context)
        return context

    yield open_context
    for context in opened:
        context.close()
    assert not faults, "\n".join(faults)


@pytest.fixture
def page(new_context: Callable[..., BrowserContext]) -> Page:
    return new_context().new_page()
