"""build_argv and build_env produce the command line and the allow-listed environment."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from cli_exec.claude import ClaudeOptions, build_argv, build_env, secret_values

BASE = ["claude", "-p", "--output-format", "stream-json", "--verbose", "--include-partial-messages"]


def test_minimal_argv_streams_json_and_has_no_prompt():
    assert build_argv(ClaudeOptions(cli="claude")) == BASE


def test_every_option_becomes_its_flag():
    options = ClaudeOptions(
        cli="claude",
        max_turns=30,
        max_budget_usd=Decimal("1.50"),
        permission_mode="acceptEdits",
        allowed_tools=("Bash(git *)", "Edit"),
        resume_session_id="5cbc9d16-8e9d-4f2b-b537-e79c8316766d",
        model="sonnet",
    )

    assert build_argv(options) == BASE + [
        "--max-turns", "30",
        "--max-budget-usd", "1.50",
        "--permission-mode", "acceptEdits",
        "--allowedTools", "Bash(git *)", "Edit",
        "--resume", "5cbc9d16-8e9d-4f2b-b537-e79c8316766d",
        "--model", "sonnet",
    ]  # fmt: skip


def test_tiny_budget_is_written_without_exponent():
    argv = build_argv(ClaudeOptions(cli="claude", max_budget_usd=Decimal("1E-5")))

    assert argv[-2:] == ["--max-budget-usd", "0.00001"]


@pytest.mark.parametrize(
    "options",
    [
        ClaudeOptions(cli="claude", max_turns=0),
        ClaudeOptions(cli="claude", max_budget_usd=Decimal("0")),
        ClaudeOptions(cli="claude", permission_mode="yolo"),
        ClaudeOptions(cli="claude", model="--dangerously-skip-permissions"),
        ClaudeOptions(cli="claude", resume_session_id="-x"),
        ClaudeOptions(cli="claude", allowed_tools=("Edit", "--print")),
        ClaudeOptions(cli="claude", model=""),
    ],
)
def test_invalid_options_are_refused(options):
    with pytest.raises(ValueError):
        build_argv(options)


def test_env_is_the_allow_list_and_nothing_else(tmp_path: Path):
    env = build_env(
        config_dir=tmp_path,
        path="/usr/bin:/bin",
        api_key="sk-test-key",
        base_url="http://127.0.0.1:9",
        oauth_token=None,
        max_api_retries=2,
    )

    assert env == {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "CLAUDE_CONFIG_DIR": str(tmp_path),
        "ANTHROPIC_API_KEY": "sk-test-key",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
        "CLAUDE_CODE_MAX_RETRIES": "2",
        "DISABLE_TELEMETRY": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }


def test_env_extra_is_added_and_oauth_token_passed(tmp_path: Path):
    env = build_env(
        config_dir=tmp_path,
        path="/bin",
        api_key=None,
        base_url=None,
        oauth_token="oauth-token-value",
        max_api_retries=1,
        extra={"IS_SANDBOX": "1"},
    )

    assert env["IS_SANDBOX"] == "1"
    assert env["CLAUDE_CODE_OAUTH_TOKEN"] == "oauth-token-value"
    assert "ANTHROPIC_API_KEY" not in env and "ANTHROPIC_BASE_URL" not in env


def test_env_refuses_values_execve_cannot_carry(tmp_path: Path):
    with pytest.raises(ValueError):
        build_env(
            config_dir=tmp_path,
            path="/bin",
            api_key=None,
            base_url=None,
            oauth_token=None,
            max_api_retries=1,
            extra={"BAD=NAME": "x"},
        )


def test_secret_values_lists_the_credentials_to_redact(tmp_path: Path):
    env = build_env(
        config_dir=tmp_path,
        path="/bin",
        api_key="sk-test-key",
        base_url="http://h",
        oauth_token="oauth-token-value",
        max_api_retries=1,
    )

    assert secret_values(env) == ["sk-test-key", "oauth-token-value"]
