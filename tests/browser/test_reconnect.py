"""The task page survives its web server restarting mid-stream: it reconnects by itself and
resumes after the last event it showed, missing none and showing none twice."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import WebSocket, expect

from tasks_app.models import TaskEvent
from tests.browser.pages import (
    RECONNECT_MS,
    TASK_MS,
    expect_status,
    log_in_as,
    make_browser_user,
    start_task,
    stream_entries,
    wait_for_script,
)
from tests.fakes.anthropic_api import Text
from tests.live import asgi_server_on_port, stop_process

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
]

# ~100 chunks 0.15 s apart: long enough to still be streaming after the restart.
LONG_REPLY = " ".join(f"r{i:03d}" for i in range(120))
# Every value the connection indicator takes, in order, as the page sets them.
RECORD_CONNECTION_STATES = """
window.connectionStates = [];
new MutationObserver(() => {
    const state = document.querySelector('[data-testid="connection-state"]');
    const states = window.connectionStates;
    if (state && states[states.length - 1] !== state.dataset.state) {
        states.push(state.dataset.state);
    }
}).observe(document, {subtree: true, childList: true, attributes: true});
"""


class SocketLog:
    """Every task socket the page opens, with the messages it received, in order."""

    def __init__(self) -> None:
        self.sockets: list[tuple[str, list[dict[str, Any]]]] = []

    def watch(self, socket: WebSocket) -> None:
        if "/ws/tasks/" not in socket.url:
            return
        received: list[dict[str, Any]] = []
        self.sockets.append((socket.url, received))
        socket.on("framereceived", lambda payload: received.append(json.loads(payload)))

    def event_seqs(self) -> list[list[int]]:
        """Seqs of the event messages of each socket that received any message."""
        return [
            [m["seq"] for m in messages if m["type"] == "event"]
            for _, messages in self.sockets
            if messages
        ]

    def afters(self) -> list[int]:
        return [
            int(parse_qs(urlsplit(url).query)["after"][0])
            for url, messages in self.sockets
            if messages
        ]


def test_page_resumes_after_a_web_restart_without_gaps_or_duplicates(
    worker, fake_model, web, worker_env, page
):
    fake_model.script("[restart]", Text(LONG_REPLY, chunk_chars=6, delay_s=0.15))
    page.add_init_script(RECORD_CONNECTION_STATES)
    sockets = SocketLog()
    page.on("websocket", sockets.watch)
    log_in_as(page, make_browser_user("alice"))
    task_id = start_task(page, "[restart] count slowly")
    text = page.get_by_test_id("assistant-text")
    expect(text).to_contain_text("r000 r001", timeout=TASK_MS)

    stop_process(web.live)
    wait_for_script(
        page, "window.connectionStates.includes('reconnecting')", RECONNECT_MS, "the drop"
    )
    with asgi_server_on_port(worker_env, web.port, name="web-restarted"):
        wait_for_script(
            page,
            "window.connectionStates.slice(window.connectionStates.indexOf('reconnecting'))"
            ".includes('live')",
            RECONNECT_MS,
            "the page to reconnect",
        )
        # What makes this a resume mid-stream rather than a replay of a finished task.
        assert fake_model.in_flight == 1, "the reply ended before the page was back: lengthen it"
        expect_status(page, "succeeded")
        expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "finished")

    expect(text).to_have_text(LONG_REPLY)
    expect(page.get_by_test_id("result-status")).to_have_text("Succeeded")
    expect(page.get_by_test_id("result-text")).to_have_text(LONG_REPLY)
    stored = list(TaskEvent.objects.filter(task_id=task_id).order_by("seq").values_list("seq"))
    per_socket = sockets.event_seqs()
    received = [seq for seqs in per_socket for seq in seqs]
    # Each stored event reached the page once, in order, across the sockets...
    assert len(per_socket) >= 2
    assert received == [seq for (seq,) in stored] == list(range(1, len(stored) + 1))
    # ...because each new socket asked for exactly what came after the last one's.
    assert sockets.afters() == [0, *[seqs[-1] for seqs in per_socket[:-1]]]
    seqs = [entry["seq"] for entry in stream_entries(page) if entry["seq"] is not None]
    assert seqs == sorted(set(seqs))
