"""How long a chunk of the model's reply takes to show in the page, through the whole stack:
fake model → CLI → worker → database and Redis → web server → WebSocket → DOM. Measured
and recorded, not asserted: the numbers depend on the machine."""

from __future__ import annotations

import json
import math
import statistics

import pytest
from playwright.sync_api import expect

from tests.browser.pages import TASK_MS, expect_status, log_in_as, make_browser_user, start_task
from tests.fakes.anthropic_api import Text
from tests.live import ARTIFACTS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
]

CHUNKS = 40
CHUNK_DELAY_S = 0.1
# Fixed-width tokens, one per chunk, so each chunk is recognisable in the page's text.
TOKEN_CHARS = 5
REPLY = "".join(f"t{i:03d};" for i in range(CHUNKS))
# When (Date.now(), the same machine clock as the fake's time.time()) each token first
# appeared in the stream's text, and when the socket first went live. A MutationObserver
# runs right after the DOM change, before the next paint.
RECORD_TOKEN_TIMES = """
window.tokenSeenAt = {};
window.liveAt = null;
new MutationObserver(() => {
    const now = Date.now();
    const state = document.querySelector('[data-testid="connection-state"]');
    if (window.liveAt === null && state && state.dataset.state === "live") window.liveAt = now;
    const stream = document.querySelector('[data-testid="stream"]');
    if (!stream) return;
    for (const match of stream.textContent.matchAll(/t(\\d{3});/g)) {
        if (!(match[1] in window.tokenSeenAt)) window.tokenSeenAt[match[1]] = now;
    }
}).observe(document, {subtree: true, childList: true, characterData: true, attributes: true});
"""


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest value with `fraction` of them at or below it."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


def test_chunk_latency_from_model_to_page_is_recorded(worker, fake_model, page):
    assert len(REPLY) == CHUNKS * TOKEN_CHARS
    fake_model.script("[latency]", Text(REPLY, chunk_chars=TOKEN_CHARS, delay_s=CHUNK_DELAY_S))
    page.add_init_script(RECORD_TOKEN_TIMES)
    log_in_as(page, make_browser_user("alice"))
    start_task(page, "[latency] measure me")
    expect_status(page, "succeeded")
    expect(page.get_by_test_id("assistant-text")).to_have_text(REPLY, timeout=TASK_MS)

    seen_ms: dict[str, int] = page.evaluate("window.tokenSeenAt")
    live_at_ms: int = page.evaluate("window.liveAt")
    sent = fake_model.text_deltas("[latency]")
    assert [delta.text for delta in sent] == [
        REPLY[i : i + TOKEN_CHARS] for i in range(0, len(REPLY), TOKEN_CHARS)
    ]
    # Chunks sent before the page's socket was live measure the page load, not the stream.
    delays_ms = [
        seen_ms[delta.text[1:4]] - delta.sent_at * 1000
        for delta in sent
        if delta.sent_at * 1000 >= live_at_ms
    ]
    assert delays_ms, "the page was not live before the reply streamed"
    report = {
        "what": "fake model writes a text delta -> the page's DOM shows it (ms)",
        "chunks": CHUNKS,
        "chunk_delay_s": CHUNK_DELAY_S,
        "samples": len(delays_ms),
        "p50_ms": round(statistics.median(delays_ms), 1),
        "p95_ms": round(percentile(delays_ms, 0.95), 1),
        "min_ms": round(min(delays_ms), 1),
        "max_ms": round(max(delays_ms), 1),
        "delays_ms": [round(d, 1) for d in delays_ms],
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "browser-latency.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"\nchunk latency model -> browser over {report['samples']} chunks: "
        f"p50 {report['p50_ms']} ms, p95 {report['p95_ms']} ms, max {report['max_ms']} ms"
    )
