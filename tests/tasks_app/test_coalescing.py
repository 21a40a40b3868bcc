"""Merging consecutive text deltas: what may merge, what never does, on generated runs."""

import random

import pytest

from cli_exec.redact import Redactor
from tasks_app.services.coalescing import MAX_MERGED_CHARS, add_coalesced, coalesced
from tasks_app.services.events import NewEvent


def delta(text: str, message: str | None = "msg_1", parent: str | None = None) -> NewEvent:
    payload: dict = {"text": text, "partial": True}
    if message is not None:
        payload["message_id"] = message
    if parent is not None:
        payload["parent_tool_use_id"] = parent
    return NewEvent("text", payload)


def complete(text: str, message: str = "msg_1") -> NewEvent:
    return NewEvent("text", {"text": text, "partial": False, "message_id": message})


TOOL = NewEvent("tool_use", {"id": "toolu_1", "name": "Bash", "input": {"command": "ls"}})


def test_consecutive_deltas_of_one_message_become_one_delta():
    assert coalesced([delta("Hel"), delta("lo"), delta(", world")]) == [delta("Hello, world")]


@pytest.mark.parametrize(
    "events",
    [
        [delta("a", "msg_1"), delta("b", "msg_2")],
        [delta("a", parent=None), delta("b", parent="toolu_9")],
        [delta("a", message=None), delta("b")],
        [delta("a"), TOOL, delta("b")],
        [delta("a"), complete("a"), delta("b")],
        [delta("a"), NewEvent("text", {"text": "b", "partial": True, "extra": 1})],
        [delta("a"), NewEvent("stderr", {"text": "b"})],
    ],
)
def test_deltas_of_other_messages_or_split_by_other_events_stay_apart(events):
    assert coalesced(events) == events


def test_a_merged_delta_stops_growing_at_the_cap():
    piece = "x" * 1000
    merged = coalesced([delta(piece) for _ in range(40)])
    assert [len(e.payload["text"]) for e in merged] == [16_000, 16_000, 8_000]
    assert all(len(e.payload["text"]) <= MAX_MERGED_CHARS for e in merged)


def test_merging_never_changes_the_events_it_was_given():
    first, second = delta("a"), delta("b")
    pending = [first]
    add_coalesced(pending, second)
    assert first.payload["text"] == "a" and second.payload["text"] == "b"
    assert pending == [delta("ab")]


def generated(rng: random.Random, length: int) -> list[NewEvent]:
    """A plausible stream: deltas of a few messages and sub-agents, completes, tools."""
    events: list[NewEvent] = []
    for _ in range(length):
        roll = rng.random()
        message = rng.choice(["msg_1", "msg_2", None])
        parent = rng.choice([None, None, "toolu_sub"])
        if roll < 0.75:
            text = "".join(rng.choice("ab é\n😀") for _ in range(rng.randint(0, 6)))
            events.append(delta(text, message, parent))
        elif roll < 0.85:
            events.append(complete("done", message or "msg_1"))
        elif roll < 0.95:
            events.append(TOOL)
        else:
            events.append(NewEvent("status", {"status": "running"}))
    return events


def runs(events: list[NewEvent]) -> list[tuple[str, object]]:
    """What the stream means: each other event as is, each run of one message's
    consecutive deltas as its text, in order."""
    meaning: list[tuple[str, object]] = []
    for event in events:
        p = event.payload
        if event.kind == "text" and p.get("partial") is True and p.keys() <= {
            "text", "partial", "message_id", "parent_tool_use_id"
        }:  # fmt: skip
            key = ("delta", (p.get("message_id"), p.get("parent_tool_use_id")))
            if meaning and meaning[-1][0] == key:
                meaning[-1] = (key, meaning[-1][1] + p["text"])  # type: ignore[operator]
                continue
            meaning.append((key, p["text"]))
        else:
            meaning.append(("other", (event.kind, p)))
    return meaning


@pytest.mark.parametrize("seed", range(200))
def test_generated_streams_mean_the_same_merged_with_fewer_events(seed):
    rng = random.Random(seed)
    raw = generated(rng, rng.randint(0, 120))
    merged = coalesced(raw)
    assert runs(merged) == runs(raw)
    assert len(merged) == len(runs(raw))  # one event per run: nothing left unmerged


def test_a_secret_split_across_deltas_is_redacted_once_they_are_merged():
    redact = Redactor(["sk-ant-abc123xyz"]).redact_text
    raw = [delta("the key is sk-a"), delta("nt-abc1"), delta("23xyz, keep it")]
    assert all("sk-ant-abc123xyz" not in e.payload["text"] for e in raw)
    assert coalesced(raw, redact) == [delta("the key is [REDACTED], keep it")]
