#!/usr/bin/env python3
"""A stand-in for the Claude Code CLI that prints stream-json lines at once, no model.

Stdlib only: the bench runs it with `python -IS` so that its start-up is as short as an
interpreter allows. The prompt (stdin) is a JSON spec made by `prompt()`:
- `lines`: text deltas to print, each carrying `time.time()` as it is written;
- `interval_ms`: pace between them (0: as fast as possible, buffered output);
- `go_file`: print the init line, then wait for this file before the deltas;
- `flood_mb_s`, `flood_s`: then print text deltas of 64 KiB at that rate for that long
  (or until the service stops it at its output cap);
- `big_line_mib`: then print one text delta line of that size.
The init line carries `bench_started_at`, the time this process began running Python.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from typing import Any

STARTED_AT = time.time()
VERSION = "2.1.197 (Claude Code; agentsite bench fake)"
GO_WAIT_S = 120.0
GO_POLL_S = 0.005


FLOOD_CHUNK = 65_536


def prompt(
    *,
    lines: int = 0,
    interval_ms: float = 0.0,
    go_file: str | None = None,
    flood_mb_s: float = 0.0,
    flood_s: float = 0.0,
    big_line_mib: float = 0.0,
) -> str:
    """The spec the fake CLI reads from stdin; the task's prompt in the application."""
    spec: dict[str, Any] = {"bench": 1, "lines": lines, "interval_ms": interval_ms}
    spec["go_file"] = go_file
    if flood_mb_s:
        spec.update(flood_mb_s=flood_mb_s, flood_s=flood_s)
    if big_line_mib:
        spec["big_line_mib"] = big_line_mib
    return json.dumps(spec)


def delta_line(index: int) -> str:
    """One stream-json text delta: `<index> <time.time()>;` as its text (the `;` keeps
    deltas apart once the service merges consecutive ones into one event)."""
    event = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta"}}
    event["delta"]["text"] = f"{index} {time.time():.6f};"
    return json.dumps({"type": "stream_event", "event": event}) + "\n"


def parse_delta_texts(text: str) -> list[tuple[int, float]]:
    """(index, written at) of every delta in a (possibly merged) delta text; [] for
    any other text."""
    if not text.endswith(";"):
        return []
    found = []
    for piece in text[:-1].split(";"):
        parts = piece.split(" ")
        if len(parts) != 2 or not parts[0].isdigit():
            return []
        try:
            found.append((int(parts[0]), float(parts[1])))
        except ValueError:
            return []
    return found


def _write_transcript(session_id: str) -> None:
    # The real CLI leaves a transcript under its config dir; the worker stores it.
    config_dir = os.environ.get("CLAUDE_CONFIG_DIR")
    if not config_dir:
        return
    folder = os.path.join(config_dir, "projects", "bench")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{session_id}.jsonl"), "w") as transcript:
        transcript.write(json.dumps({"type": "user", "sessionId": session_id}) + "\n")


def _text_line(text: str) -> str:
    event = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta"}}
    event["delta"]["text"] = text
    return json.dumps({"type": "stream_event", "event": event}) + "\n"


def _flood(out: Any, mb_per_s: float, seconds: float) -> None:
    """64 KiB deltas at `mb_per_s` for `seconds`; a closed pipe (stopped at the cap) ends it."""
    line = _text_line("x" * FLOOD_CHUNK)
    interval_s = FLOOD_CHUNK / (mb_per_s * 1_000_000)
    begin = time.monotonic()
    sent = 0
    while time.monotonic() - begin < seconds:
        pause = begin + sent * interval_s - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        out.write(line)
        out.flush()
        sent += 1


def _wait_for(path: str) -> None:
    deadline = time.monotonic() + GO_WAIT_S
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            sys.exit(f"fake CLI: {path} never appeared")
        time.sleep(GO_POLL_S)


def run(spec: dict[str, Any]) -> None:
    out = sys.stdout
    session_id = str(uuid.uuid4())
    init = {"type": "system", "subtype": "init", "session_id": session_id, "cwd": os.getcwd()}
    out.write(json.dumps({**init, "bench_started_at": STARTED_AT}) + "\n")
    out.flush()
    lines = int(spec.get("lines", 0))
    interval_s = float(spec.get("interval_ms", 0.0)) / 1000.0
    if spec.get("go_file"):
        _wait_for(str(spec["go_file"]))
    if spec.get("flood_mb_s"):
        _flood(out, float(spec["flood_mb_s"]), float(spec.get("flood_s", 0.0)))
    if spec.get("big_line_mib"):
        out.write(_text_line("y" * int(float(spec["big_line_mib"]) * 1_048_576)))
        out.flush()
    begin = time.monotonic()
    for index in range(lines):
        if interval_s:
            # Paced against the start, so a late wake-up does not shift every later line.
            pause = begin + index * interval_s - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        out.write(delta_line(index))
        if interval_s:
            out.flush()
    _write_transcript(session_id)
    result = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": f"printed {lines} lines",
        "session_id": session_id,
        "total_cost_usd": 0.0,
        "num_turns": 1,
        "duration_ms": int((time.time() - STARTED_AT) * 1000),
        "usage": {"input_tokens": 1, "output_tokens": lines},
    }
    out.write(json.dumps(result) + "\n")
    out.flush()


def main() -> int:
    if "--version" in sys.argv[1:]:
        print(VERSION)
        return 0
    text = sys.stdin.read()
    run(json.loads(text) if text.strip() else {})
    return 0


if __name__ == "__main__":
    sys.exit(main())
