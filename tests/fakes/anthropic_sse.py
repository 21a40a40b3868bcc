"""Wire formats of the Messages API: SSE events, whole messages and error bodies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tests.fakes.anthropic_steps import Error, Text, ToolUse

# The CLI prices turns from usage; any deterministic, non-zero count keeps cost non-zero.
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class SseEvent:
    """One server-sent event; `delay_s` is waited before sending it (slow replies)."""

    type: str
    data: dict[str, Any]
    delay_s: float = 0.0

    def encode(self) -> bytes:
        return f"event: {self.type}\ndata: {json.dumps(self.data)}\n\n".encode()


def estimate_tokens(text: str) -> int:
    return max(1, len(text) // CHARS_PER_TOKEN)


def message_start(*, message_id: str, model: str, input_tokens: int) -> SseEvent:
    message = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 1,
            "service_tier": "standard",
        },
    }
    return SseEvent("message_start", {"type": "message_start", "message": message})


def ping() -> SseEvent:
    return SseEvent("ping", {"type": "ping"})


def _chunks(text: str, size: int) -> list[str]:
    size = max(1, size)
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _text_block(index: int, step: Text) -> Iterator[SseEvent]:
    yield SseEvent(
        "content_block_start",
        {
            "type": "content_block_start",
            "index": index,
            "content_block": {"type": "text", "text": ""},
        },
    )
    for position, chunk in enumerate(_chunks(step.text, step.chunk_chars)):
        delta = {"type": "text_delta", "text": chunk}
        yield SseEvent(
            "content_block_delta",
            {"type": "content_block_delta", "index": index, "delta": delta},
            delay_s=step.delay_s if position else 0.0,
        )
    yield SseEvent("content_block_stop", {"type": "content_block_stop", "index": index})


def _tool_use_block(index: int, step: ToolUse, tool_use_id: str) -> Iterator[SseEvent]:
    block = {"type": "tool_use", "id": tool_use_id, "name": step.name, "input": {}}
    yield SseEvent(
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": block},
    )
    for chunk in _chunks(json.dumps(step.input), 16):
        delta = {"type": "input_json_delta", "partial_json": chunk}
        yield SseEvent(
            "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        )
    yield SseEvent("content_block_stop", {"type": "content_block_stop", "index": index})


def _stop_reason(step: Text | ToolUse) -> str:
    return "tool_use" if isinstance(step, ToolUse) else "end_turn"


def _output_tokens(step: Text | ToolUse) -> int:
    if isinstance(step, ToolUse):
        return estimate_tokens((step.text or "") + json.dumps(step.input))
    return estimate_tokens(step.text)


def reply_events(step: Text | ToolUse, *, tool_use_id: str) -> Iterator[SseEvent]:
    """Everything after message_start and ping, up to and including message_stop."""
    if isinstance(step, Text):
        yield from _text_block(0, step)
    else:
        index = 0
        if step.text:
            yield from _text_block(0, Text(step.text))
            index = 1
        yield from _tool_use_block(index, step, tool_use_id)
    delta = {"stop_reason": _stop_reason(step), "stop_sequence": None}
    usage = {"output_tokens": _output_tokens(step)}
    yield SseEvent("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
    yield SseEvent("message_stop", {"type": "message_stop"})


def whole_message(
    step: Text | ToolUse, *, message_id: str, model: str, input_tokens: int, tool_use_id: str
) -> dict[str, Any]:
    """The non-streaming form of a reply (requests without "stream": true)."""
    content: list[dict[str, Any]] = []
    text = step.text if isinstance(step, Text) else step.text
    if text:
        content.append({"type": "text", "text": text})
    if isinstance(step, ToolUse):
        content.append(
            {"type": "tool_use", "id": tool_use_id, "name": step.name, "input": step.input}
        )
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _stop_reason(step),
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": _output_tokens(step),
        },
    }


def error_body(step: Error, *, request_id: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": step.error_type, "message": step.message},
        "request_id": request_id,
    }
