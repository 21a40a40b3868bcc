"""The fake Messages API over plain HTTP: wire format, scripting, robustness, control API."""

from __future__ import annotations

import http.client
import json
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.fakes.anthropic_api import (
    Error,
    FakeAnthropic,
    FakeAnthropicControl,
    Hang,
    StepFormatError,
    Text,
    ToolUse,
    step_from_dict,
    step_to_dict,
)
from tests.live import wait_until

TOOLS = [{"name": "Write", "description": "write a file", "input_schema": {"type": "object"}}]


def _body(prompt: str, *, stream: bool = True, tools: list[Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "claude-test-model",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}],
        "stream": stream,
    }
    if tools is None:
        body["tools"] = TOOLS
    elif tools:
        body["tools"] = tools
    return body


def _connect(fake: FakeAnthropic) -> http.client.HTTPConnection:
    url = urlsplit(fake.base_url)
    return http.client.HTTPConnection(url.hostname, url.port, timeout=20)


def _post(fake: FakeAnthropic, path: str, body: dict[str, Any]) -> http.client.HTTPResponse:
    conn = _connect(fake)
    conn.request("POST", path, json.dumps(body), {"content-type": "application/json"})
    return conn.getresponse()


def _read_events(response: http.client.HTTPResponse) -> list[tuple[str, dict[str, Any]]]:
    events, kind = [], ""
    for raw in response:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            events.append((kind, json.loads(line.removeprefix("data: "))))
    return events


def _stream(fake: FakeAnthropic, prompt: str, **kwargs: Any) -> list[tuple[str, dict[str, Any]]]:
    response = _post(fake, "/v1/messages?beta=true", _body(prompt, **kwargs))
    assert response.status == 200
    return _read_events(response)


def _streamed_text(events: list[tuple[str, dict[str, Any]]]) -> str:
    deltas = [data["delta"] for kind, data in events if kind == "content_block_delta"]
    return "".join(d["text"] for d in deltas if d["type"] == "text_delta")


def _fake_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("fake-anthropic")]


@pytest.mark.parametrize(
    "step",
    [
        Text("hi", chunk_chars=2, delay_s=0.5),
        ToolUse("Write", {"file_path": "a.txt", "content": "x"}, text="Writing"),
        Error(429, retry_after_s=2.0),
        Hang(),
    ],
)
def test_step_dict_round_trip_gives_equal_step(step: Any) -> None:
    assert step_from_dict(json.loads(json.dumps(step_to_dict(step)))) == step


def test_step_from_dict_unknown_kind_raises() -> None:
    with pytest.raises(StepFormatError):
        step_from_dict({"kind": "telepathy"})


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (429, "rate_limit_error"),
        (500, "api_error"),
        (529, "overloaded_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
    ],
)
def test_error_step_derives_error_type_from_status(status: int, error_type: str) -> None:
    assert Error(status).error_type == error_type


def test_text_reply_streams_events_in_real_api_order(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script("order-marker", Text("Hello, streamed world", chunk_chars=5))

    events = _stream(fake_anthropic, "order-marker go")

    kinds = [kind for kind, _ in events]
    assert kinds[:3] == ["message_start", "ping", "content_block_start"]
    assert kinds[-4:] == [
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert kinds.count("content_block_delta") == 5
    assert _streamed_text(events) == "Hello, streamed world"
    start = events[0][1]["message"]
    assert start["model"] == "claude-test-model"
    assert start["usage"]["input_tokens"] > 0
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"


def test_text_deltas_sent_are_recorded_in_order_with_wall_clock_times(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.script("sent-marker", Text("abcdefgh", chunk_chars=3))
    before = time.time()

    events = _stream(fake_anthropic, "sent-marker go")

    sent = fake_anthropic.text_deltas("sent-marker")
    assert [d.text for d in sent] == ["abc", "def", "gh"] and _streamed_text(events) == "abcdefgh"
    assert before <= sent[0].sent_at <= sent[1].sent_at <= sent[2].sent_at <= time.time()
    assert fake_anthropic.text_deltas("other-marker") == []


def test_tool_use_streams_input_as_json_deltas(fake_anthropic: FakeAnthropic) -> None:
    tool_input = {"file_path": "/tmp/ws/hello.txt", "content": "hi there, a longer content"}
    fake_anthropic.script("tool-marker", ToolUse("Write", tool_input, text="Writing it."))

    events = _stream(fake_anthropic, "tool-marker go")

    starts = [data["content_block"] for kind, data in events if kind == "content_block_start"]
    assert [block["type"] for block in starts] == ["text", "tool_use"]
    assert starts[1]["name"] == "Write"
    partials = [
        data["delta"]["partial_json"]
        for kind, data in events
        if kind == "content_block_delta" and data["index"] == 1
    ]
    assert len(partials) > 1
    assert json.loads("".join(partials)) == tool_input
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_side_request_without_tools_does_not_consume_steps(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script("side-marker", Text("scripted"))

    side = _stream(fake_anthropic, "side-marker: write a title", tools=[])
    main = _stream(fake_anthropic, "side-marker go")

    assert _streamed_text(side) == "Fake side reply"
    assert _streamed_text(main) == "scripted"
    assert len(fake_anthropic.side_requests()) == 1
    assert [r.marker for r in fake_anthropic.requests()] == ["side-marker"]


def test_non_streaming_request_gets_whole_message(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script("whole-marker", ToolUse("Read", {"file_path": "x"}, text="Reading"))

    response = _post(fake_anthropic, "/v1/messages", _body("whole-marker go", stream=False))

    message = json.loads(response.read())
    assert [block["type"] for block in message["content"]] == ["text", "tool_use"]
    assert message["stop_reason"] == "tool_use"


def test_error_step_answers_json_error_with_request_id(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script("error-marker", Error(429, retry_after_s=3))

    response = _post(fake_anthropic, "/v1/messages?beta=true", _body("error-marker go"))

    assert response.status == 429
    assert response.getheader("retry-after") == "3"
    assert response.getheader("request-id", "").startswith("req_")
    body = json.loads(response.read())
    assert body["type"] == "error"
    assert body["error"]["type"] == "rate_limit_error"


def test_unmatched_conversation_gets_default_reply(fake_anthropic: FakeAnthropic) -> None:
    prompt = "nobody scripted this conversation, so it gets the default answer"

    events = _stream(fake_anthropic, prompt)

    assert _streamed_text(events) == f"fake reply: {prompt[:40]}"
    assert fake_anthropic.requests()[0].marker is None


def test_script_runs_out_then_replies_exhausted(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script("short-marker", Text("only step"))

    first = _stream(fake_anthropic, "short-marker one")
    second = _stream(fake_anthropic, "short-marker two")

    assert _streamed_text(first) == "only step"
    assert _streamed_text(second) == "(script exhausted)"


def test_count_tokens_answers_input_tokens(fake_anthropic: FakeAnthropic) -> None:
    response = _post(fake_anthropic, "/v1/messages/count_tokens?beta=true", _body("count me"))

    assert response.status == 200
    assert json.loads(response.read())["input_tokens"] > 0
    assert fake_anthropic.requests() == []


def test_unknown_path_answers_404_json(fake_anthropic: FakeAnthropic) -> None:
    response = _post(fake_anthropic, "/v1/complete", {"prompt": "x"})

    assert response.status == 404
    assert json.loads(response.read())["error"]["type"] == "not_found_error"


def test_recorded_request_has_end_time_after_reply(fake_anthropic: FakeAnthropic) -> None:
    _stream(fake_anthropic, "timed request")

    (recorded,) = fake_anthropic.requests()
    assert recorded.ended_at is not None
    assert recorded.ended_at >= recorded.started_at
    assert recorded.messages[0]["content"][0]["text"] == "timed request"


def test_client_leaving_mid_stream_keeps_server_serving(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script("leave-marker", Text("slow " * 20, chunk_chars=5, delay_s=30))
    response = _post(fake_anthropic, "/v1/messages?beta=true", _body("leave-marker go"))
    assert response.readline().startswith(b"event: message_start")
    wait_until(lambda: fake_anthropic.in_flight == 1, what="slow reply in flight")

    response.close()

    wait_until(lambda: fake_anthropic.in_flight == 0, what="server noticing the hang-up")
    assert _streamed_text(_stream(fake_anthropic, "still there?")) == "fake reply: still there?"


def test_release_finishes_hang_with_end_turn_text(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script("hang-marker", Hang())
    response = _post(fake_anthropic, "/v1/messages?beta=true", _body("hang-marker go"))
    wait_until(lambda: fake_anthropic.in_flight == 1, what="hang in flight")

    fake_anthropic.release()

    events = _read_events(response)
    assert _streamed_text(events) == "released"
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"


def test_concurrent_hangs_count_in_flight_and_peak(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script("peak-marker", Hang(), Hang())
    responses = [
        _post(fake_anthropic, "/v1/messages?beta=true", _body("peak-marker go")) for _ in range(2)
    ]
    wait_until(lambda: fake_anthropic.in_flight == 2, what="two requests in flight")

    fake_anthropic.release()
    for response in responses:
        _read_events(response)

    wait_until(lambda: fake_anthropic.in_flight == 0, what="both requests done")
    assert fake_anthropic.peak_in_flight == 2


def test_close_with_open_hang_returns_and_leaves_no_threads() -> None:
    fake = FakeAnthropic()
    fake.script("close-marker", Hang())
    response = _post(fake, "/v1/messages?beta=true", _body("close-marker go"))
    wait_until(lambda: fake.in_flight == 1, what="hang in flight")

    closer = threading.Thread(target=fake.close, name="test-closer")
    closer.start()
    closer.join(20)

    assert not closer.is_alive()
    assert _fake_threads() == []
    response.close()


def test_control_api_scripts_and_reports(fake_anthropic: FakeAnthropic) -> None:
    control = FakeAnthropicControl(fake_anthropic.base_url)
    control.script("control-marker", Text("over the wire"))

    events = _stream(fake_anthropic, "control-marker go")

    assert _streamed_text(events) == "over the wire"
    (recorded,) = control.requests("control-marker")
    assert recorded["step"] == {
        "kind": "text",
        "text": "over the wire",
        "chunk_chars": 8,
        "delay_s": 0.0,
    }
    assert control.stats() == {"in_flight": 0, "peak_in_flight": 1, "total": 1, "side_total": 0}
    control.reset()
    assert control.requests() == []


def test_control_api_rejects_unknown_step_kind(fake_anthropic: FakeAnthropic) -> None:
    response = _post(fake_anthropic, "/_fake/script", {"marker": "m", "steps": [{"kind": "nope"}]})

    assert response.status == 400
