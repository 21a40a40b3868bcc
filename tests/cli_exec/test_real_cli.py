"""The real Claude CLI, run through CliRun against a tiny local Messages API: proves the
argv, environment, parser and transcript paths against what the CLI actually does."""

from __future__ import annotations

import select
import shutil
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from cli_exec.claude import (
    ClaudeOptions,
    Verdict,
    build_argv,
    build_env,
    find_transcript,
    secret_values,
    summarize_run,
    transcript_dir,
)
from cli_exec.events import EventKind
from cli_exec.runner import CliCommand, RunLimits
from tests.cli_exec.conftest import Collected, collect

pytestmark = pytest.mark.timeout(120)
CLI = Path(__file__).resolve().parents[2] / "node_modules" / ".bin" / "claude"
API_KEY = "sk-test-secret-key"


@pytest.fixture
def probe_url() -> Iterator[str]:
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("probe_server.py"))],
        stdout=subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        readable, _, _ = select.select([server.stdout], [], [], 10)
        assert readable, "the probe server never printed its port"
        yield f"http://127.0.0.1:{int(server.stdout.readline())}"
    finally:
        server.kill()
        server.wait()
        if server.stdout is not None:
            server.stdout.close()


def run_claude(options: ClaudeOptions, workspace: Path, config: Path, url: str) -> Collected:
    config.mkdir(exist_ok=True)
    env = build_env(
        config_dir=config,
        path="/usr/bin:/bin",
        api_key=API_KEY,
        base_url=url,
        oauth_token=None,
        max_api_retries=1,
    )
    command = CliCommand(
        argv=build_argv(options), cwd=workspace, env=env, stdin=b"hi", secrets=secret_values(env)
    )
    return collect(command, RunLimits(wall_timeout_s=60, idle_timeout_s=60))


@pytest.mark.skipif(not CLI.exists(), reason="the Claude CLI is not installed (npm ci)")
def test_real_cli_streams_parses_and_resumes_on_another_config_dir(tmp_path, probe_url):
    workspace = tmp_path / "ws_a.b"
    workspace.mkdir()
    options = ClaudeOptions(
        cli=str(CLI),
        max_turns=3,
        max_budget_usd=Decimal("5"),
        permission_mode="acceptEdits",
        allowed_tools=("Read", "Edit"),
        model="claude-test-model",
    )

    first = run_claude(options, workspace, tmp_path / "cfg1", probe_url)

    summary = summarize_run(first.outcome)
    assert (summary.verdict, summary.result_text) == (Verdict.SUCCEEDED, "Hello from fake")
    assert first.of(EventKind.SYSTEM)[0].payload["subtype"] == "init"
    assert [e.payload for e in first.of(EventKind.TEXT)] == [
        {"text": "Hello", "partial": True, "message_id": "msg_1"},
        {"text": " from", "partial": True, "message_id": "msg_1"},
        {"text": " fake", "partial": True, "message_id": "msg_1"},
        {"text": "Hello from fake", "partial": False, "message_id": "msg_1"},
    ]
    assert API_KEY not in repr(first.events)
    session_id = summary.cli_session_id
    assert session_id is not None
    transcript = find_transcript(tmp_path / "cfg1", session_id)
    assert transcript == transcript_dir(tmp_path / "cfg1", workspace) / f"{session_id}.jsonl"

    # Another worker: a fresh config dir that only has the transcript restored.
    restored = transcript_dir(tmp_path / "cfg2", workspace) / transcript.name
    restored.parent.mkdir(parents=True)
    shutil.copy(transcript, restored)
    resumed = run_claude(
        ClaudeOptions(cli=str(CLI), resume_session_id=session_id),
        workspace,
        tmp_path / "cfg2",
        probe_url,
    )

    resumed_summary = summarize_run(resumed.outcome)
    assert resumed_summary.verdict is Verdict.SUCCEEDED, resumed_summary.error
    assert resumed_summary.cli_session_id == session_id
