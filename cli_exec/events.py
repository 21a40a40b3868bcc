"""Typed events the runner yields for each line a CLI prints."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class EventKind(StrEnum):
    SYSTEM = "system"
    TEXT = "text"
    TOOL_USE = "tool_use"
    TOOL_RESULT = "tool_result"
    RESULT = "result"
    STDERR = "stderr"
    RAW = "raw"
    UNKNOWN = "unknown"


@dataclass(slots=True)
class CliEvent:
    """One thing the CLI said; payload is JSON-serialisable and already redacted.

    Not frozen, though nobody changes one: a frozen dataclass takes twice as long to
    build, and a CLI prints tens of thousands of these."""

    kind: EventKind
    payload: dict[str, Any]


def raw_event(text: str, error: str, *, truncated: bool = False) -> CliEvent:
    return CliEvent(EventKind.RAW, {"text": text, "error": error, "truncated": truncated})


def stderr_event(text: str, *, truncated: bool = False) -> CliEvent:
    payload: dict[str, Any] = {"text": text}
    if truncated:
        payload["truncated"] = True
    return CliEvent(EventKind.STDERR, payload)
