"""Helpers shared by the scripted fake CLIs: stream-json lines the way Claude prints them."""

import json
import sys
from typing import Any


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def init(session_id: str = "sess-1") -> None:
    emit({"type": "system", "subtype": "init", "session_id": session_id, "cwd": "/w"})


def delta(text: str) -> dict[str, Any]:
    return {
        "type": "stream_event",
        "event": {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": text},
        },
    }


def result(text: str = "done", subtype: str = "success", **extra: Any) -> dict[str, Any]:
    return {
        "type": "result",
        "subtype": subtype,
        "is_error": subtype != "success",
        "result": text,
        "session_id": "sess-1",
        **extra,
    }


def ready() -> None:
    """Tells the test that handlers are installed, so its signals will not race them."""
    emit({"type": "system", "subtype": "ready"})
