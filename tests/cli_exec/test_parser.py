"""parse_stdout_line and StdoutParser map each stream-json line to the right events."""

from __future__ import annotations

import json

import pytest

from cli_exec.events import CliEvent, EventKind
from cli_exec.parser import StdoutParser, parse_stdout_line
from cli_exec.redact import Redactor


def line(obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def delta(delta_obj: dict, **extra: object) -> bytes:
    return line(
        {
            "type": "stream_event",
            "event": {"type": "content_block_delta", "index": 0, "delta": delta_obj},
            **extra,
        }
    )


def test_system_line_is_kept_whole():
    obj = {"type": "system", "subtype": "init", "session_id": "s", "tools": ["Bash"]}

    assert parse_stdout_line(line(obj)) == [CliEvent(EventKind.SYSTEM, obj)]


def test_result_line_is_kept_whole():
    obj = {"type": "result", "subtype": "success", "is_error": False, "result": "hi"}

    assert parse_stdout_line(line(obj)) == [CliEvent(EventKind.RESULT, obj)]


def test_text_delta_is_partial_text():
    events = parse_stdout_line(delta({"type": "text_delta", "text": "Hel"}))

    assert events == [CliEvent(EventKind.TEXT, {"text": "Hel", "partial": True})]


@pytest.mark.parametrize(
    "event",
    [
        {"type": "message_start", "message": {"id": "m"}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}},
        {"type": "message_stop"},
        {"type": "content_block_delta", "delta": {"type": "input_json_delta", "partial_json": "{"}},
        {"type": "content_block_delta", "delta": {"type": "thinking_delta", "thinking": "hm"}},
    ],
)
def test_stream_scaffolding_produces_no_event(event):
    assert parse_stdout_line(line({"type": "stream_event", "event": event})) == []


def test_partial_text_carries_the_message_id_from_message_start():
    parser = StdoutParser()
    start = {"type": "stream_event", "event": {"type": "message_start", "message": {"id": "msg_7"}}}

    parser.parse_text(json.dumps(start))
    events = parser.parse_text(delta({"type": "text_delta", "text": "x"}).decode())

    assert events[0].payload == {"text": "x", "partial": True, "message_id": "msg_7"}


def test_subagent_text_names_its_parent_tool_call():
    events = parse_stdout_line(
        delta({"type": "text_delta", "text": "x"}, parent_tool_use_id="tu_9")
    )

    assert events[0].payload["parent_tool_use_id"] == "tu_9"


def test_assistant_message_yields_one_event_per_text_and_tool_use_block():
    obj = {
        "type": "assistant",
        "message": {
            "id": "msg_1",
            "content": [
                {"type": "thinking", "thinking": "hidden"},
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "tu_1", "name": "Bash", "input": {"command": "ls"}},
                {"type": "tool_use", "id": "tu_2", "name": "Read", "input": {"file_path": "a"}},
            ],
        },
    }

    events = parse_stdout_line(line(obj))

    assert events == [
        CliEvent(EventKind.TEXT, {"text": "Let me look.", "partial": False, "message_id": "msg_1"}),
        CliEvent(EventKind.TOOL_USE, {"id": "tu_1", "name": "Bash", "input": {"command": "ls"}}),
        CliEvent(EventKind.TOOL_USE, {"id": "tu_2", "name": "Read", "input": {"file_path": "a"}}),
    ]


def test_user_line_yields_one_event_per_tool_result():
    content = [
        {"type": "tool_result", "tool_use_id": "tu_1", "content": "ok"},
        {
            "type": "tool_result",
            "tool_use_id": "tu_2",
            "content": [{"type": "text", "text": "no"}],
            "is_error": True,
        },
    ]

    events = parse_stdout_line(
        line({"type": "user", "message": {"role": "user", "content": content}})
    )

    assert [event.payload for event in events] == [
        {"tool_use_id": "tu_1", "content": "ok", "is_error": False},
        {"tool_use_id": "tu_2", "content": [{"type": "text", "text": "no"}], "is_error": True},
    ]


def test_plain_user_text_is_not_a_tool_result():
    obj = {"type": "user", "message": {"role": "user", "content": "[Request interrupted by user]"}}

    assert parse_stdout_line(line(obj)) == []


def test_unknown_type_keeps_the_whole_object():
    obj = {"type": "rate_limit_event", "x": 1}

    assert parse_stdout_line(line(obj)) == [
        CliEvent(EventKind.UNKNOWN, {"type": "rate_limit_event", "data": obj})
    ]


@pytest.mark.parametrize(
    "obj",
    [
        {"type": "assistant", "message": "not an object"},
        {"type": "assistant", "message": {"content": "text"}},
        {"type": "user", "message": None},
        {"type": "stream_event", "event": []},
    ],
)
def test_malformed_known_lines_become_unknown_events(obj):
    events = parse_stdout_line(line(obj))

    assert [event.kind for event in events] == [EventKind.UNKNOWN]


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"{broken", "invalid JSON"),
        (b"[" * 100_000, "invalid JSON"),
        (b"42", "not a JSON object"),
        (b"null", "not a JSON object"),
        (b"\xff\xfe{}", "invalid UTF-8"),
    ],
)
def test_unparseable_lines_become_raw_events(raw, error):
    (event,) = parse_stdout_line(raw + b"\n")

    assert event.kind is EventKind.RAW
    assert event.payload["error"] == error
    assert event.payload["truncated"] is False


def test_blank_lines_produce_nothing():
    assert parse_stdout_line(b"  \r\n") == []


def test_lone_surrogates_and_nul_escapes_are_replaced():
    # JSON.stringify writes these for binary tool output; jsonb and UTF-8 reject them.
    text = '{"type": "result", "result": "a\\ud800b\\u0000c\\ud83d\\ude00"}'

    (event,) = parse_stdout_line(text.encode())

    assert event.payload["result"] == "a\ufffdb\ufffdc\U0001f600"
    json.dumps(event.payload, ensure_ascii=False).encode("utf-8")


@pytest.mark.parametrize(
    "value",
    [
        "NaN",
        "-Infinity",
        "1e400",
        str(2**70),
        str(-(2**70)),
        '"caf\\u00e9 \\ud83d\\ude00"',
    ],
)
def test_numbers_and_escapes_parse_exactly_as_json_reads_them(value):
    text = '{"type": "result", "result": ' + value + "}"

    (event,) = parse_stdout_line(text.encode())

    assert event.kind is EventKind.RESULT
    assert json.dumps(event.payload["result"]) == json.dumps(json.loads(text)["result"])


def test_redactor_applies_before_parsing():
    secret = "sk-live-abcdef"

    (event,) = parse_stdout_line(line({"type": "result", "result": secret}), Redactor([secret]))

    assert event.payload["result"] == "[REDACTED]"
