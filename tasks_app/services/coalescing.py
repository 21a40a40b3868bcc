"""Merging a stream's consecutive text deltas before they are stored.

A model writing at speed sends a delta every few characters; each would otherwise be a
row, a push and a message to every watcher. Consecutive deltas of one message (same
message id, same sub-agent parent) carry nothing a client uses but their text in
order, and clients append a delta's text to the open text block of its message, so
one delta holding the concatenation renders exactly as the run of deltas did.
"""

from __future__ import annotations

from collections.abc import Callable

from tasks_app.services.events import NewEvent

# A merged delta stays one WebSocket message a browser renders at once.
MAX_MERGED_CHARS = 16_384
DELTA_KEYS = frozenset({"text", "partial", "message_id", "parent_tool_use_id"})


def is_text_delta(event: NewEvent) -> bool:
    payload = event.payload
    return (
        event.kind == "text"
        and payload.get("partial") is True
        and isinstance(payload.get("text"), str)
        and payload.keys() <= DELTA_KEYS
    )


def _same_block(earlier: NewEvent, later: NewEvent) -> bool:
    a, b = earlier.payload, later.payload
    return a.get("message_id") == b.get("message_id") and a.get("parent_tool_use_id") == b.get(
        "parent_tool_use_id"
    )


def add_coalesced(
    pending: list[NewEvent], event: NewEvent, redact: Callable[[str], str] = str
) -> None:
    """Append `event` to `pending`, merged into the last one when both are text deltas
    of one message (and the merged text stays under MAX_MERGED_CHARS).

    Each delta was redacted alone, but a secret can straddle two of them: `redact`
    runs again on the merged text, so no stored event holds it whole.
    """
    if pending and is_text_delta(event) and is_text_delta(pending[-1]):
        last = pending[-1]
        text = last.payload["text"] + event.payload["text"]
        if _same_block(last, event) and len(text) <= MAX_MERGED_CHARS:
            pending[-1] = NewEvent(last.kind, {**last.payload, "text": redact(text)})
            return
    pending.append(event)


def coalesced(events: list[NewEvent], redact: Callable[[str], str] = str) -> list[NewEvent]:
    merged: list[NewEvent] = []
    for event in events:
        add_coalesced(merged, event, redact)
    return merged
