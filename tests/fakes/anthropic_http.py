"""HTTP handler of the fake Messages API: /v1/messages, count_tokens and the /_fake/ control API.

Control API (for a fake running as its own process):
  POST /_fake/script {"marker": str, "steps": [step dicts, see anthropic_steps.step_to_dict]}
  GET  /_fake/requests[?marker=M]   recorded main requests, oldest first
  GET  /_fake/stats                 {"in_flight", "peak_in_flight", "total", "side_total"}
  POST /_fake/release               let Hang() steps finish
  POST /_fake/reset                 forget scripts, recordings and stats
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes import anthropic_sse as sse
from tests.fakes.anthropic_steps import (
    Error,
    Hang,
    Step,
    StepFormatError,
    Text,
    ToolUse,
    step_from_dict,
)
from tests.fakes.http_base import ClientGone, FakeRequestHandler

if TYPE_CHECKING:
    from tests.fakes.anthropic_api import FakeAnthropic

RELEASED_REPLY = Text("released")


class FakeAnthropicHandler(FakeRequestHandler):
    server_version = "fake-anthropic/1.0"

    @property
    def fake(self) -> FakeAnthropic:
        return self.server.fake  # type: ignore[attr-defined]

    # --- routing ---------------------------------------------------------------------------

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib naming
        # The CLI probes `HEAD /` for connectivity before its first request.
        self.send_response(HTTPStatus.OK)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        if url.path == "/_fake/requests":
            marker = parse_qs(url.query).get("marker", [None])[0]
            self.send_json(200, [r.to_json() for r in self.fake.requests(marker)])
        elif url.path == "/_fake/stats":
            self.send_json(200, self.fake.stats())
        else:
            self._send_api_error(404, "not_found_error", f"no route for GET {url.path}")

    def do_POST(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._send_api_error(400, "invalid_request_error", "body is not JSON")
            return
        if url.path == "/v1/messages":
            self._answer_messages(raw, body)
        elif url.path == "/v1/messages/count_tokens":
            tokens = sse.estimate_tokens(raw.decode(errors="replace"))
            self.send_json(200, {"input_tokens": tokens})
        elif url.path.startswith("/_fake/"):
            self._answer_control(url.path, body)
        else:
            self._send_api_error(404, "not_found_error", f"no route for POST {url.path}")

    def _answer_control(self, path: str, body: dict[str, Any]) -> None:
        if path == "/_fake/script":
            marker = body.get("marker")
            try:
                if not isinstance(marker, str) or not marker:
                    raise StepFormatError("a non-empty string marker is required")
                steps = [step_from_dict(raw) for raw in body.get("steps", [])]
            except StepFormatError as exc:
                self.send_json(400, {"error": str(exc)})
                return
            self.fake.script(marker, *steps)
        elif path == "/_fake/release":
            self.fake.release()
        elif path == "/_fake/reset":
            self.fake.reset()
        else:
            self.send_json(404, {"error": f"no control route {path}"})
            return
        self.send_json(200, {"ok": True})

    # --- /v1/messages ------------------------------------------------------------------------

    def _answer_messages(self, raw: bytes, body: dict[str, Any]) -> None:
        index, step = self.fake.begin(self.path, dict(self.headers), body)
        input_tokens = sse.estimate_tokens(raw.decode(errors="replace"))
        ended = False

        def end_record() -> None:
            nonlocal ended
            if not ended:
                ended = True
                self.fake.end(index)

        # Ended just before the last bytes go out: a client holding a complete reply can rely
        # on in_flight and ended_at already saying so.
        self._end_record = end_record
        try:
            if isinstance(step, Error):
                self._send_error_step(step)
            elif body.get("stream"):
                self._stream_reply(step, body, input_tokens=input_tokens, index=index)
            else:
                self._send_whole_reply(step, body, input_tokens=input_tokens)
        except (ClientGone, OSError):
            self.close_connection = True
        finally:
            end_record()

    def _stream_reply(
        self, step: Step, body: dict[str, Any], *, input_tokens: int, index: int
    ) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("request-id", self.fake.next_id("req"))
        # Chunked like the real API, so the CLI keeps its connection alive between turns.
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        message_id = self.fake.next_id("msg")
        model = str(body.get("model", "claude-fake"))
        self._write_event(
            sse.message_start(message_id=message_id, model=model, input_tokens=input_tokens)
        )
        self._write_event(sse.ping())
        if isinstance(step, Hang):
            self._pause(None)
            step = RELEASED_REPLY
        assert isinstance(step, Text | ToolUse)
        for event in sse.reply_events(step, tool_use_id=self.fake.next_id("toolu")):
            if event.delay_s:
                self._pause(event.delay_s)
            if event.type == "message_stop":
                self._end_record()
            self._write_event(event)
            delta = event.data.get("delta", {})
            if event.type == "content_block_delta" and delta.get("type") == "text_delta":
                self.fake.text_delta_sent(index, delta["text"])
        self._write_chunk(b"")

    def _send_whole_reply(self, step: Step, body: dict[str, Any], *, input_tokens: int) -> None:
        if isinstance(step, Hang):
            self._pause(None)
            step = RELEASED_REPLY
        assert isinstance(step, Text | ToolUse)
        message = sse.whole_message(
            step,
            message_id=self.fake.next_id("msg"),
            model=str(body.get("model", "claude-fake")),
            input_tokens=input_tokens,
            tool_use_id=self.fake.next_id("toolu"),
        )
        self._end_record()
        self.send_json(200, message)

    def _send_error_step(self, step: Error) -> None:
        request_id = self.fake.next_id("req")
        headers = {"request-id": request_id}
        if step.retry_after_s is not None:
            headers["retry-after"] = f"{step.retry_after_s:g}"
        self._end_record()
        self.send_json(step.status, sse.error_body(step, request_id=request_id), headers)

    def _pause(self, seconds: float | None) -> None:
        """Wait `seconds` (None: forever) or until release(); a client that hangs up meanwhile
        ends the reply at once, so in_flight stays true to what the client sees."""
        self.pause(seconds, released=self.fake.released, closing=self.fake.closing)

    # --- writing -------------------------------------------------------------------------------

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _write_event(self, event: sse.SseEvent) -> None:
        self._write_chunk(event.encode())

    def _send_api_error(self, status: int, error_type: str, message: str) -> None:
        payload = {"type": "error", "error": {"type": error_type, "message": message}}
        self.send_json(status, payload)
