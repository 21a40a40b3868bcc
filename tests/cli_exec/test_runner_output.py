"""CliRun turns what a CLI prints into the right events, whatever it prints."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import replace

import pytest

from cli_exec import _pipes
from cli_exec.events import EventKind
from cli_exec.runner import CliRun, StopReason
from tests.cli_exec.conftest import FAST, collect, fake_argv

pytestmark = pytest.mark.timeout(60)


def test_conversation_yields_typed_events_in_order(command_in):
    run = collect(command_in(fake_argv("conversation"), stdin=b"hello"))

    kinds = [event.kind for event in run.events]
    assert kinds == [
        EventKind.SYSTEM,
        EventKind.TEXT,
        EventKind.TEXT,
        EventKind.TEXT,
        EventKind.TOOL_USE,
        EventKind.TOOL_RESULT,
        EventKind.RESULT,
    ]
    texts = [event.payload for event in run.of(EventKind.TEXT)]
    assert texts == [
        {"text": "Hel", "partial": True, "message_id": "msg_1"},
        {"text": "lo", "partial": True, "message_id": "msg_1"},
        {"text": "Hello", "partial": False, "message_id": "msg_1"},
    ]
    assert run.of(EventKind.TOOL_USE)[0].payload == {
        "id": "tu_1",
        "name": "Read",
        "input": {"path": "a"},
    }
    assert run.of(EventKind.TOOL_RESULT)[0].payload == {
        "tool_use_id": "tu_1",
        "content": "x",
        "is_error": False,
    }


def test_conversation_outcome_reports_exit_result_and_session(command_in):
    outcome = collect(command_in(fake_argv("conversation"), stdin=b"hello")).outcome

    assert outcome.stop_reason is StopReason.EXITED
    assert outcome.exit_code == 0
    assert outcome.result is not None
    assert outcome.result["result"] == f"5 {hashlib.sha256(b'hello').hexdigest()}"
    assert outcome.session_id == "sess-1"
    assert outcome.stdout_lines == 8
    assert outcome.pid > 0


def test_large_prompt_to_a_chatty_cli_does_not_deadlock(command_in):
    prompt = os.urandom(300_000)

    run = collect(command_in(fake_argv("chatty_reader"), stdin=prompt))

    assert run.outcome.result is not None
    assert run.outcome.result["result"] == f"{len(prompt)} {hashlib.sha256(prompt).hexdigest()}"
    assert len(run.of(EventKind.TEXT)) == 4096


def test_hundred_thousand_lines_all_arrive_in_order(command_in):
    run = collect(command_in(fake_argv("many_lines", "100000")))

    texts = [event.payload["text"] for event in run.of(EventKind.TEXT)]
    assert texts == [f"chunk {i}" for i in range(100_000)]
    assert len(run.events) == 100_001
    assert run.events[-1].kind is EventKind.RESULT
    assert run.outcome.stdout_lines == 100_001
    # Lines arrive in bulk: far fewer batches than lines.
    assert len(run.batches) < 20_000


def test_garbage_lines_become_raw_events_and_valid_lines_still_parse(command_in):
    limits = replace(FAST, max_line_bytes=1000, kept_line_bytes=300)

    run = collect(command_in(fake_argv("garbage", "5000")), limits)

    payloads = [(event.kind, event.payload) for event in run.events]
    assert payloads[0][0] is EventKind.SYSTEM
    assert payloads[1] == (
        EventKind.RAW,
        {"text": "\ufffd\ufffd not utf-8 \ufffd(", "error": "invalid UTF-8", "truncated": False},
    )
    assert payloads[2][1]["error"] == "invalid JSON"
    assert payloads[3][1] == {"text": "[1, 2, 3]", "error": "not a JSON object", "truncated": False}
    assert payloads[4][1]["error"] == "not a JSON object"
    assert payloads[5] == (
        EventKind.UNKNOWN,
        {"type": "brand_new_thing", "data": {"type": "brand_new_thing", "x": 1}},
    )
    assert payloads[6] == (EventKind.UNKNOWN, {"type": "", "data": {"type": ["odd"]}})
    assert payloads[7] == (
        EventKind.RAW,
        # Of the 5,000-byte line over the 1,000-byte limit, its 300-byte head.
        {"text": "A" * 300, "error": "line too long", "truncated": True},
    )
    assert payloads[8] == (EventKind.TEXT, {"text": "still parsed", "partial": True})
    assert payloads[9][0] is EventKind.RESULT
    assert len(payloads) == 10
    assert run.outcome.exit_code == 0


def test_nonzero_exit_keeps_stderr_lines_and_tail(command_in):
    run = collect(command_in(fake_argv("fail_stderr")))

    assert [event.payload for event in run.of(EventKind.STDERR)] == [
        {"text": "starting up"},
        {"text": "Error: something broke badly"},
    ]
    assert run.outcome.exit_code == 3
    assert run.outcome.stop_reason is StopReason.EXITED
    assert run.outcome.result is None
    assert run.outcome.stderr_tail == "starting up\nError: something broke badly"


def test_environment_is_exactly_the_given_mapping(command_in, tmp_path):
    # LANG is set so Python's own locale coercion does not add LC_CTYPE to what it reports.
    env = {"ONLY_THIS": "yes", "LANG": "C.UTF-8"}

    run = collect(command_in(fake_argv("print_env"), env=env))

    reported = run.of(EventKind.SYSTEM)[0].payload
    assert reported["env"] == env
    assert reported["cwd"] == os.path.realpath(tmp_path)


def test_secrets_are_redacted_from_every_event_and_the_tail(command_in):
    secret = 'sk-"quoted\\secret-123'
    escaped = json.dumps(secret)[1:-1]

    run = collect(command_in(fake_argv("leaks_secret"), stdin=secret.encode(), secrets=[secret]))

    dumped = json.dumps([event.payload for event in run.events], ensure_ascii=False)
    assert secret not in dumped and escaped not in dumped
    assert {event.kind for event in run.events if "[REDACTED]" in json.dumps(event.payload)} == {
        EventKind.TEXT,
        EventKind.SYSTEM,
        EventKind.RAW,
        EventKind.STDERR,
        EventKind.RESULT,
    }
    assert run.outcome.stderr_tail == "stderr says [REDACTED]"
    assert run.outcome.result is not None
    assert run.outcome.result["result"] == "result [REDACTED]"


def test_empty_batches_keep_coming_while_the_cli_is_silent(command_in):
    limits = replace(FAST, idle_timeout_s=0.5)

    run = collect(command_in(fake_argv("silent")), limits)

    assert sum(1 for batch in run.batches if not batch) >= 2
    assert run.outcome.stop_reason is StopReason.IDLE_TIMEOUT


def test_wake_from_another_thread_brings_a_batch_at_once(command_in):
    limits = replace(FAST, tick_s=30.0, idle_timeout_s=60.0)
    with CliRun(command_in(fake_argv("silent")), limits) as run:
        run.start()
        batches = run.batches()
        next(batch for batch in batches if batch)  # its one line; silent after
        waker = threading.Timer(0.2, run.wake)
        waker.start()
        asked = time.monotonic()
        assert next(batches) == []
        woke = time.monotonic()
        waker.join()
        assert asked + 0.1 <= woke < asked + limits.tick_s / 2
        run.request_stop()
        list(batches)
    assert run.outcome.stop_reason is StopReason.REQUESTED


def test_wake_by_brings_a_batch_before_the_tick(command_in):
    limits = replace(FAST, tick_s=30.0, idle_timeout_s=60.0)
    with CliRun(command_in(fake_argv("silent")), limits) as run:
        run.start()
        batches = run.batches()
        said = next(batch for batch in batches if batch)  # its one line; silent after
        asked = time.monotonic() + 0.2
        run.wake_by(asked)
        run.wake_by(asked + 10)  # a later wish never postpones an earlier one
        assert next(batches) == []
        woke = time.monotonic()
        assert asked <= woke < asked + limits.tick_s / 2
        run.request_stop()
        list(batches)
    assert [event.payload["text"] for event in said] == ["hello"]
    assert run.outcome.stop_reason is StopReason.REQUESTED


def test_the_clis_stdout_pipe_is_grown_so_a_fast_writer_rarely_wakes_its_reader(command_in):
    run = collect(command_in(fake_argv("pipe_size"), stdin=b"go"))

    assert run.of(EventKind.SYSTEM)[0].payload["bytes"] == _pipes.STDOUT_PIPE_BYTES
    assert _pipes.STDOUT_PIPE_BYTES > 64 * 1024  # the kernel's default


def test_a_pipe_the_kernel_will_not_grow_is_read_as_it_is(command_in, monkeypatch):
    def refuse(fd: int, command: int, arg: int = 0) -> int:
        raise PermissionError(1, "over the user's pipe budget")

    monkeypatch.setattr(_pipes.fcntl, "fcntl", refuse)
    run = collect(command_in(fake_argv("pipe_size"), stdin=b"go"))

    assert run.of(EventKind.SYSTEM)[0].payload["bytes"] == 64 * 1024
    assert run.outcome.stop_reason is StopReason.EXITED
