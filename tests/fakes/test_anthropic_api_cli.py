"""The real Claude Code CLI against the fake Messages API: answers, tools, resume, errors, hangs.

Error steps consumed per run (CLI 2.1.197, measured here): with CLAUDE_CODE_MAX_RETRIES=N,
a 500, 529, 429 or 401 takes N+1 requests (so N+1 Error steps); 403 and 400 are never
retried (1 request). Three 529s in a row (N >= 2) end with api_error_status null and a
"Repeated 529 Overloaded errors" result instead of 529.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import pytest

from tests.fakes.anthropic_api import (
    Error,
    FakeAnthropic,
    FakeAnthropicControl,
    Hang,
    Text,
    ToolUse,
)
from tests.fakes.conftest import ClaudeCli, ClaudeCliFactory, FakeProcess
from tests.live import wait_until

pytestmark = pytest.mark.integration


def _texts(messages: list[dict[str, Any]]) -> list[str]:
    texts = []
    for message in messages:
        content = message["content"]
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        texts += [block["text"] for block in blocks if block.get("type") == "text"]
    return texts


def _tool_results(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        block
        for message in messages
        if message["role"] == "user" and isinstance(message["content"], list)
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]


def test_cli_plain_answer_is_streamed_in_chunks(
    fake_anthropic: FakeAnthropic, claude_cli: ClaudeCli
) -> None:
    fake_anthropic.script("plain-marker", Text("Hello from the scripted fake", chunk_chars=6))

    run = claude_cli.run("plain-marker: say hello")

    assert run.exit_code == 0
    assert run.result["subtype"] == "success"
    assert run.result["is_error"] is False
    assert run.result["result"] == "Hello from the scripted fake"
    assert run.result["total_cost_usd"] > 0
    deltas = [line.event["event"]["delta"]["text"] for line in run.text_deltas()]
    assert deltas == ["Hello ", "from t", "he scr", "ipted ", "fake"]


def test_cli_write_tool_creates_file_and_sends_tool_result(
    fake_anthropic: FakeAnthropic, claude_cli: ClaudeCli
) -> None:
    target = claude_cli.workspace / "hello.txt"
    fake_anthropic.script(
        "write-marker",
        ToolUse("Write", {"file_path": str(target), "content": "hi"}),
        Text("done"),
    )

    run = claude_cli.run("write-marker: write hello.txt", "--permission-mode", "acceptEdits")

    assert run.result["result"] == "done"
    assert target.read_text() == "hi"
    first, second = fake_anthropic.requests("write-marker")
    (tool_result,) = _tool_results(second.messages)
    assert tool_result["tool_use_id"] == second.messages[-2]["content"][0]["id"]
    assert "is_error" not in tool_result or tool_result["is_error"] is False
    assert "File created successfully" in str(tool_result["content"])


def test_cli_default_permission_mode_denies_write_in_print_mode(
    fake_anthropic: FakeAnthropic, claude_cli: ClaudeCli
) -> None:
    # Contrary to our notes, 2.1.197 in -p asks for (and so denies) Write in the workspace
    # unless --permission-mode acceptEdits or --allowedTools Write is given.
    target = claude_cli.workspace / "denied.txt"
    fake_anthropic.script(
        "deny-marker", ToolUse("Write", {"file_path": str(target), "content": "x"}), Text("ok")
    )

    run = claude_cli.run("deny-marker: write denied.txt")

    assert run.result["subtype"] == "success"
    assert [d["tool_name"] for d in run.result["permission_denials"]] == ["Write"]
    assert not target.exists()
    (tool_result,) = _tool_results(fake_anthropic.requests("deny-marker")[1].messages)
    assert tool_result["is_error"] is True


def test_cli_resume_sends_earlier_turns_and_takes_next_step(
    fake_anthropic: FakeAnthropic, claude_cli: ClaudeCli
) -> None:
    fake_anthropic.script("resume-marker", Text("I will remember pelican"), Text("pelican"))
    first = claude_cli.run("resume-marker: remember the word pelican")

    second = claude_cli.run("which word was it?", "--resume", first.result["session_id"])

    assert second.result["subtype"] == "success"
    assert second.result["result"] == "pelican"
    _, resumed = fake_anthropic.requests("resume-marker")
    texts = _texts(resumed.messages)
    assert "resume-marker: remember the word pelican" in texts
    assert "I will remember pelican" in texts
    assert texts[-1] == "which word was it?"


def test_cli_max_turns_one_with_tool_use_ends_error_max_turns(
    fake_anthropic: FakeAnthropic, claude_cli: ClaudeCli
) -> None:
    target = claude_cli.workspace / "turns.txt"
    fake_anthropic.script(
        "turns-marker", ToolUse("Write", {"file_path": str(target), "content": "x"}), Text("no")
    )

    run = claude_cli.run(
        "turns-marker: write", "--max-turns", "1", "--permission-mode", "acceptEdits"
    )

    assert run.exit_code == 1
    assert run.result["subtype"] == "error_max_turns"
    assert run.result["is_error"] is True
    # One model request is allowed and its tool call still runs; the limit only stops the CLI
    # from sending the tool result back. num_turns counts that refused turn too.
    assert run.result["num_turns"] == 2
    assert target.read_text() == "x"
    assert len(fake_anthropic.requests("turns-marker")) == 1


@pytest.mark.parametrize(
    ("error", "max_retries", "requests_taken"),
    [
        (Error(500), 0, 1),
        (Error(500), 1, 2),
        (Error(529), 1, 2),
        (Error(429, retry_after_s=1), 1, 2),
        (Error(401), 0, 1),
        (Error(401), 1, 2),
        (Error(403), 1, 1),
    ],
    ids=["500-r0", "500-r1", "529-r1", "429-r1", "401-r0", "401-r1", "403-r1"],
)
def test_cli_api_error_after_retries_reports_status(
    fake_anthropic: FakeAnthropic,
    claude_cli: ClaudeCli,
    error: Error,
    max_retries: int,
    requests_taken: int,
) -> None:
    fake_anthropic.script("error-marker", error, error, error, Text("after the errors"))
    claude_cli.max_retries = max_retries

    run = claude_cli.run("error-marker: fail please")

    assert run.exit_code == 1
    assert run.result["is_error"] is True
    assert run.result["api_error_status"] == error.status
    assert len(fake_anthropic.requests("error-marker")) == requests_taken


def test_cli_honours_retry_after_on_429(
    fake_anthropic: FakeAnthropic, claude_cli: ClaudeCli
) -> None:
    fake_anthropic.script("retry-after-marker", Error(429, retry_after_s=1), Text("recovered"))

    run = claude_cli.run("retry-after-marker: go")

    assert run.result["result"] == "recovered"
    (retry,) = [e for e in run.events if e.get("subtype") == "api_retry"]
    assert (retry["error_status"], retry["retry_delay_ms"]) == (429, 1000)


def test_cli_recovers_when_retry_succeeds(
    fake_anthropic: FakeAnthropic, claude_cli: ClaudeCli
) -> None:
    fake_anthropic.script("recover-marker", Error(500), Text("recovered"))

    run = claude_cli.run("recover-marker: go")

    assert run.result["subtype"] == "success"
    assert run.result["result"] == "recovered"
    assert len(fake_anthropic.requests("recover-marker")) == 2


def test_cli_three_529s_report_no_api_error_status(
    fake_anthropic: FakeAnthropic, claude_cli: ClaudeCli
) -> None:
    # A worker must not rely on api_error_status alone to spot overload: it is null here.
    fake_anthropic.script("overload-marker", Error(529), Error(529), Error(529), Text("late"))
    claude_cli.max_retries = 2

    run = claude_cli.run("overload-marker: go")

    assert run.result["is_error"] is True
    assert run.result["api_error_status"] is None
    assert "Repeated 529 Overloaded errors" in run.result["result"]
    assert len(fake_anthropic.requests("overload-marker")) == 3


def test_cli_streams_slow_reply_before_it_completes(
    fake_anthropic: FakeAnthropic, claude_cli: ClaudeCli
) -> None:
    text = "one two three four five six"
    fake_anthropic.script("slow-marker", Text(text, chunk_chars=5, delay_s=0.5))

    run = claude_cli.run("slow-marker: talk slowly")

    deltas = run.text_deltas()
    assert [d.event["event"]["delta"]["text"] for d in deltas] == [
        text[i : i + 5] for i in range(0, len(text), 5)
    ]
    (recorded,) = fake_anthropic.requests("slow-marker")
    assert recorded.ended_at is not None
    # The CLI printed the first chunk while the fake was still sending the rest.
    assert deltas[0].read_at < recorded.ended_at
    read_times = [d.read_at for d in deltas]
    assert read_times == sorted(read_times)
    assistant_at = next(i for i, e in enumerate(run.events) if e["type"] == "assistant")
    assert assistant_at > run.lines.index(deltas[-1])


def test_cli_hang_then_sigint_stops_cli_and_fake_closes(
    claude_cli_factory: ClaudeCliFactory,
) -> None:
    fake = FakeAnthropic()
    cli = claude_cli_factory(base_url=fake.base_url)
    fake.script("hang-marker", Hang())
    process = cli.start("hang-marker: wait forever")
    wait_until(lambda: fake.in_flight == 1, what="CLI request hanging")
    assert process.popen.poll() is None

    process.interrupt()
    run = process.finish()

    # SIGINT ends a -p run with exit 0, usually with an error_during_execution result
    # (see notes); under load the CLI was seen exiting 0 before printing one. The engine
    # treats both as cancelled (cli_exec.claude.summarize_run).
    assert run.exit_code == 0
    results = [e for e in run.events if e.get("type") == "result"]
    assert [r["subtype"] for r in results] in ([], ["error_during_execution"])
    wait_until(lambda: fake.in_flight == 0, what="fake noticing the CLI hung up")
    closer = threading.Thread(target=fake.close, name="test-closer")
    closer.start()
    closer.join(20)
    assert not closer.is_alive()
    assert [t.name for t in threading.enumerate() if t.name.startswith("fake-anthropic")] == []


def test_cli_three_at_once_reach_peak_in_flight_three(
    fake_anthropic: FakeAnthropic, claude_cli_factory: ClaudeCliFactory
) -> None:
    reply = Text("a slow reply for each", chunk_chars=4, delay_s=30)
    clis = [claude_cli_factory(base_url=fake_anthropic.base_url, name=f"cli{n}") for n in range(3)]
    for n in range(3):
        fake_anthropic.script(f"concurrent-marker-{n}", reply)

    processes = [cli.start(f"concurrent-marker-{n}: go") for n, cli in enumerate(clis)]
    wait_until(lambda: fake_anthropic.peak_in_flight == 3, timeout_s=60, what="3 in flight")
    fake_anthropic.release()  # sends the rest of the slow replies without their delays
    runs = [process.finish() for process in processes]

    assert [run.result["result"] for run in runs] == [reply.text] * 3
    assert fake_anthropic.in_flight == 0


def test_cli_against_fake_process_scripted_over_http(
    fake_anthropic_process: FakeProcess, claude_cli_factory: ClaudeCliFactory
) -> None:
    control = FakeAnthropicControl(fake_anthropic_process.base_url)
    control.script("process-marker", Text("answered by the fake process"))
    cli = claude_cli_factory(base_url=fake_anthropic_process.base_url)

    run = cli.run("process-marker: hello process")

    assert run.result["result"] == "answered by the fake process"
    (recorded,) = control.requests("process-marker")
    assert "process-marker: hello process" in _texts(recorded["messages"])
    assert recorded["headers"]["x-app"] == "cli"
    assert control.stats()["total"] == 1
    fake_anthropic_process.popen.send_signal(signal.SIGTERM)
    assert fake_anthropic_process.popen.wait(20) == 0


def test_fake_process_exits_on_sigterm_while_cli_request_hangs(
    fake_anthropic_process: FakeProcess, claude_cli_factory: ClaudeCliFactory
) -> None:
    FakeAnthropicControl(fake_anthropic_process.base_url).script("gone-marker", Hang())
    cli = claude_cli_factory(base_url=fake_anthropic_process.base_url)
    process = cli.start("gone-marker: wait")
    control = FakeAnthropicControl(fake_anthropic_process.base_url)
    wait_until(lambda: control.stats()["in_flight"] == 1, what="CLI request hanging")

    fake_anthropic_process.popen.send_signal(signal.SIGTERM)

    assert fake_anthropic_process.popen.wait(20) == 0
    run = process.finish()
    assert run.result["is_error"] is True
