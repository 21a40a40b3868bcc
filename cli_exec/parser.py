"""Maps Claude Code stream-json lines to typed events."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgspec

from cli_exec.events import CliEvent, EventKind, raw_event
from cli_exec.redact import Redactor

_Handler = Callable[["StdoutParser", dict[str, Any]], list[CliEvent]]


def _unknown(obj: dict[str, Any]) -> list[CliEvent]:
    kind = obj.get("type")
    return [
        CliEvent(EventKind.UNKNOWN, {"type": kind if isinstance(kind, str) else "", "data": obj})
    ]


_fast_decoder = msgspec.json.Decoder()


def _loads(line: str) -> Any:
    """json.loads, through msgspec (a quarter of json's time on a delta line), which
    reads what it accepts exactly as json does and refuses what only json accepts (lone
    surrogates, NaN, numbers past a double); json reads those."""
    try:
        return _fast_decoder.decode(line)
    except msgspec.DecodeError:
        return json.loads(line)


def _needs_scrub(line: str) -> bool:
    # JSON.stringify writes lone surrogates and NUL as escapes; after json.loads they are
    # strings that PostgreSQL jsonb and UTF-8 encoders reject, so they must be replaced.
    return "\\u" in line and ("\\u0000" in line or "\\ud" in line or "\\uD" in line)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "\ufffd")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return value
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(item) for item in value]
    return value


def _with_parent(payload: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
    # Sub-agent output carries the tool call that started it; the UI nests it by that id.
    parent = obj.get("parent_tool_use_id")
    if parent is not None:
        payload["parent_tool_use_id"] = parent
    return payload


class StdoutParser:
    """Turns decoded stdout lines into events.

    Stateful only to attach the current message id to partial text, which the delta
    lines themselves do not carry.
    """

    def __init__(self) -> None:
        self._message_ids: dict[str | None, str] = {}

    def parse_text(self, line: str) -> list[CliEvent]:
        if not line or line.isspace():
            return []
        try:
            obj = _loads(line)
        except (ValueError, RecursionError):
            return [raw_event(line.rstrip("\r"), "invalid JSON")]
        if not isinstance(obj, dict):
            return [raw_event(line.rstrip("\r"), "not a JSON object")]
        # A one-character test first: most lines hold no backslash at all.
        if "\\" in line and _needs_scrub(line):
            obj = _scrub(obj)
        kind = obj.get("type")
        # A non-string type (say a list) is unhashable and must not reach the dict lookup.
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            return _unknown(obj)
        return handler(self, obj)

    def _system(self, obj: dict[str, Any]) -> list[CliEvent]:
        return [CliEvent(EventKind.SYSTEM, obj)]

    def _result(self, obj: dict[str, Any]) -> list[CliEvent]:
        return [CliEvent(EventKind.RESULT, obj)]

    def _stream_event(self, obj: dict[str, Any]) -> list[CliEvent]:
        event = obj.get("event")
        if not isinstance(event, dict):
            return _unknown(obj)
        event_type = event.get("type")
        # Text deltas first: they are most of what a CLI prints (and this is its hot path).
        if event_type == "content_block_delta":
            delta = event.get("delta")
            if not isinstance(delta, dict) or delta.get("type") != "text_delta":
                return []
            text = delta.get("text")
            if not isinstance(text, str):
                return []
            payload: dict[str, Any] = {"text": text, "partial": True}
            message_id = self._message_ids.get(obj.get("parent_tool_use_id"))
            if message_id is not None:
                payload["message_id"] = message_id
            return [CliEvent(EventKind.TEXT, _with_parent(payload, obj))]
        if event_type == "message_start":
            message = event.get("message")
            if isinstance(message, dict) and isinstance(message.get("id"), str):
                self._message_ids[obj.get("parent_tool_use_id")] = message["id"]
        # Block starts/stops, message deltas, tool-input and thinking deltas are
        # scaffolding: the completed assistant message repeats what matters.
        return []

    def _assistant(self, obj: dict[str, Any]) -> list[CliEvent]:
        message = obj.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            return _unknown(obj)
        message_id = message.get("id") if isinstance(message, dict) else None
        events: list[CliEvent] = []
        for block in content:
            if not isinstance(block, dict):
                continue
            block_type = block.get("type")
            if block_type == "text" and isinstance(block.get("text"), str):
                payload: dict[str, Any] = {"text": block["text"], "partial": False}
                if isinstance(message_id, str):
                    payload["message_id"] = message_id
                events.append(CliEvent(EventKind.TEXT, _with_parent(payload, obj)))
            elif block_type == "tool_use":
                payload = {
                    "id": block.get("id"),
                    "name": block.get("name"),
                    "input": block.get("input"),
                }
                events.append(CliEvent(EventKind.TOOL_USE, _with_parent(payload, obj)))
        return events

    def _user(self, obj: dict[str, Any]) -> list[CliEvent]:
        message = obj.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            # A plain user turn (prompt echo, interruption notice) is not a tool result.
            return []
        if not isinstance(content, list):
            return _unknown(obj)
        events: list[CliEvent] = []
        for block in content:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                payload = {
                    "tool_use_id": block.get("tool_use_id"),
                    "content": block.get("content"),
                    "is_error": bool(block.get("is_error", False)),
                }
                events.append(CliEvent(EventKind.TOOL_RESULT, _with_parent(payload, obj)))
        return events


_HANDLERS: dict[str, _Handler] = {
    "system": StdoutParser._system,
    "result": StdoutParser._result,
    "stream_event": StdoutParser._stream_event,
    "assistant": StdoutParser._assistant,
    "user": StdoutParser._user,
}


def parse_stdout_line(line: bytes, redactor: Redactor | None = None) -> list[CliEvent]:
    """Parse one stdout line on its own (no partial-text message ids); never raises."""
    line = line.rstrip(b"\r\n")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        text = line.decode("utf-8", "replace")
        if redactor is not None:
            text = redactor.redact_text(text)
        return [raw_event(text, "invalid UTF-8")]
    if redactor is not None:
        text = redactor.redact_text(text)
    return StdoutParser().parse_text(text)
