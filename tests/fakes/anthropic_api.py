"""A scripted fake of the Anthropic Messages API for running the real Claude Code CLI in tests.

In-process: `with FakeAnthropic() as fake: fake.script("marker", Text("hi"))`. As a process:
`python -m tests.fakes.anthropic_api --port 0` prints `LISTENING <url>`; script it over HTTP
with `FakeAnthropicControl` (see anthropic_http.py for the control routes).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from tests.fakes.anthropic_http import FakeAnthropicHandler
from tests.fakes.anthropic_steps import (
    Error,
    Hang,
    Step,
    StepFormatError,
    Text,
    ToolUse,
    step_from_dict,
    step_to_dict,
)
from tests.fakes.http_base import BackgroundServer, ControlClient, serve_until_signalled

__all__ = [
    "Error",
    "FakeAnthropic",
    "FakeAnthropicControl",
    "Hang",
    "RecordedRequest",
    "SentTextDelta",
    "Step",
    "StepFormatError",
    "Text",
    "ToolUse",
    "step_from_dict",
    "step_to_dict",
]

EXHAUSTED = Text("(script exhausted)")
SIDE_REPLY = Text("Fake side reply")
_REMINDER_PREFIX = "<system-reminder>"


@dataclass(frozen=True)
class RecordedRequest:
    """One request to /v1/messages as the fake saw it (times from time.monotonic())."""

    started_at: float
    ended_at: float | None
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    marker: str | None
    messages: list[dict[str, Any]]
    step: Step | None = None

    def to_json(self) -> dict[str, Any]:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields["step"] = step_to_dict(self.step) if self.step is not None else None
        return fields


@dataclass(frozen=True)
class SentTextDelta:
    """One text delta of a streamed reply, as the fake finished writing it. `sent_at` is
    time.time(), not monotonic: other processes on this machine (a browser) compare with it."""

    sent_at: float
    marker: str | None
    text: str


def _block_texts(message: dict[str, Any]) -> list[str]:
    content = message.get("content")
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        return []
    return [b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"]


def first_user_text(messages: list[dict[str, Any]]) -> str:
    """All text of the first user message, injected <system-reminder> blocks included."""
    for message in messages:
        if message.get("role") == "user":
            return "\n".join(_block_texts(message))
    return ""


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """The latest text the user typed, skipping reminders and tool-result-only messages."""
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        typed = [t for t in _block_texts(message) if not t.lstrip().startswith(_REMINDER_PREFIX)]
        if typed:
            return "\n".join(typed).strip()
    return ""


def is_main_request(body: dict[str, Any]) -> bool:
    # The CLI's agent loop always offers tools; its side calls (titles, summaries, command
    # prefix checks) use no tools, and must not eat a conversation's script steps.
    return bool(body.get("tools"))


class FakeAnthropic:
    """The fake Messages API, served on 127.0.0.1 from a daemon thread."""

    def __init__(self, port: int = 0) -> None:
        self.requested_port = port
        self._lock = threading.Lock()
        self._scripts: dict[str, list[Step]] = {}
        self._cursors: dict[str, int] = {}
        self._main: list[RecordedRequest] = []
        self._side: list[RecordedRequest] = []
        self._text_deltas: list[SentTextDelta] = []
        self._in_flight = 0
        self._peak_in_flight = 0
        self._ids = itertools.count(1)
        self.released = threading.Event()
        self.closing = threading.Event()
        self._server = BackgroundServer(
            self, FakeAnthropicHandler, port=port, name="fake-anthropic"
        )
        self.base_url = self._server.base_url
        self._closed = False
        self._outage: tuple[Step, float] | None = None  # (answer, until time.monotonic())

    def __enter__(self) -> FakeAnthropic:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- scripting and inspection -------------------------------------------------------

    def script(self, marker: str, *steps: Step) -> None:
        """Conversations whose first user message contains `marker` get `steps`, one per
        main request (the first scripted marker found wins); scripting a marker again
        replaces its steps and restarts them."""
        with self._lock:
            self._scripts[marker] = list(steps)
            self._cursors[marker] = 0

    def requests(self, marker: str | None = None) -> list[RecordedRequest]:
        """Main (agent loop) requests, oldest first; all of them when `marker` is None."""
        with self._lock:
            return [r for r in self._main if marker is None or r.marker == marker]

    def side_requests(self) -> list[RecordedRequest]:
        """Requests without tools (titles, summaries...); they never consume steps."""
        with self._lock:
            return list(self._side)

    def text_deltas(self, marker: str | None = None) -> list[SentTextDelta]:
        """Text deltas written to main requests' streams, oldest first; all when `marker` is
        None. For measuring how long a chunk takes to reach a reader downstream."""
        with self._lock:
            return [d for d in self._text_deltas if marker is None or d.marker == marker]

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    @property
    def peak_in_flight(self) -> int:
        with self._lock:
            return self._peak_in_flight

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "in_flight": self._in_flight,
                "peak_in_flight": self._peak_in_flight,
                "total": len(self._main),
                "side_total": len(self._side),
            }

    def outage(self, step: Step, for_s: float) -> None:
        """For the next `for_s` seconds every main request gets `step` (an Error: the
        model API down), whatever its script; scripts resume afterwards."""
        with self._lock:
            self._outage = (step, time.monotonic() + for_s)

    def release(self) -> None:
        """Let every Hang() step, current and future, finish with an end_turn text, and send
        the rest of every slow Text() without its delays."""
        self.released.set()

    def reset(self) -> None:
        """Forget scripts, recordings and stats, and re-arm Hang() (control API)."""
        with self._lock:
            self._scripts.clear()
            self._cursors.clear()
            self._main.clear()
            self._side.clear()
            self._text_deltas.clear()
            self._peak_in_flight = self._in_flight
        self.released.clear()

    def close(self) -> None:
        """Release hangs, stop serving, hang up on clients and join every thread."""
        if self._closed:
            return
        self._closed = True
        self.closing.set()
        self.released.set()
        self._server.close()

    # --- used by the request handler ------------------------------------------------------

    def next_id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._ids):06d}"

    def begin(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, Step]:
        """Record a /v1/messages request and pick its reply; pair with end()."""
        messages = body.get("messages") or []
        main = is_main_request(body)
        with self._lock:
            marker = self._match(messages) if main else None
            if not main:
                step: Step = SIDE_REPLY
            elif self._outage is not None and time.monotonic() < self._outage[1]:
                step = self._outage[0]
            elif marker is None:
                step = Text(f"fake reply: {last_user_text(messages)[:40]}")
            else:
                step = self._take_step(marker)
            record = RecordedRequest(
                time.monotonic(), None, path, headers, body, marker, messages, step
            )
            if not main:
                self._side.append(record)
                return -1, step
            self._main.append(record)
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
            return len(self._main) - 1, step

    def end(self, index: int) -> None:
        if index < 0:
            return
        with self._lock:
            self._in_flight -= 1
            if index < len(self._main):  # a reset() may have cleared the list meanwhile
                record = self._main[index]
                self._main[index] = dataclasses.replace(record, ended_at=time.monotonic())

    def text_delta_sent(self, index: int, text: str) -> None:
        """Record a text delta just written to main request `index` (see begin())."""
        sent_at = time.time()
        with self._lock:
            # A reset() may have cleared the list meanwhile, as in end().
            if 0 <= index < len(self._main):
                marker = self._main[index].marker
                self._text_deltas.append(SentTextDelta(sent_at, marker, text))

    def _match(self, messages: list[dict[str, Any]]) -> str | None:
        text = first_user_text(messages)
        return next((marker for marker in self._scripts if marker in text), None)

    def _take_step(self, marker: str) -> Step:
        steps, cursor = self._scripts[marker], self._cursors[marker]
        self._cursors[marker] = cursor + 1
        return steps[cursor] if cursor < len(steps) else EXHAUSTED


class FakeAnthropicControl(ControlClient):
    """Scripts and inspects a fake running as its own process, through /_fake/ routes."""

    def script(self, marker: str, *steps: Step) -> None:
        payload = {"marker": marker, "steps": [step_to_dict(s) for s in steps]}
        self._call("POST", "/_fake/script", payload)

    def requests(self, marker: str | None = None) -> list[dict[str, Any]]:
        return self._call("GET", "/_fake/requests", query={"marker": marker})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    return serve_until_signalled(lambda: FakeAnthropic(port=args.port))


if __name__ == "__main__":
    sys.exit(main())
