"""The Claude Code adapter: argv, environment, outcome verdicts and transcript paths."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

from cli_exec.env import compose_env
from cli_exec.runner import RunOutcome, StopReason

# The choices `claude --help` lists for --permission-mode (2.1.197).
PERMISSION_MODES = frozenset(
    {"acceptEdits", "auto", "bypassPermissions", "default", "dontAsk", "plan"}
)
# Variables whose values are credentials: pass them to CliCommand.secrets for redaction.
SECRET_ENV_NAMES = ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN")
_TRANSIENT_STATUSES = frozenset({429, 529})
_CREDENTIAL_STATUSES = frozenset({401, 403})
_MAX_DETAIL_CHARS = 240


@dataclass(frozen=True)
class ClaudeOptions:
    cli: str
    max_turns: int | None = None
    max_budget_usd: Decimal | None = None
    permission_mode: str | None = None
    allowed_tools: Sequence[str] = ()
    resume_session_id: str | None = None
    model: str | None = None


def _flag_value(flag: str, value: str) -> str:
    # A value starting with "-" would be read as another flag (argument injection).
    if not value or value.startswith("-"):
        raise ValueError(f"invalid value for {flag}: {value!r}")
    return value


def build_argv(options: ClaudeOptions) -> list[str]:
    """The CLI command line; the prompt goes to stdin, never here (ps shows argv)."""
    argv = [options.cli, "-p", "--output-format", "stream-json", "--verbose"]
    argv.append("--include-partial-messages")
    if options.max_turns is not None:
        if options.max_turns < 1:
            raise ValueError(f"max_turns must be at least 1, not {options.max_turns}")
        argv += ["--max-turns", str(options.max_turns)]
    if options.max_budget_usd is not None:
        if not options.max_budget_usd > 0:
            raise ValueError(f"max_budget_usd must be positive, not {options.max_budget_usd}")
        argv += ["--max-budget-usd", format(options.max_budget_usd, "f")]
    if options.permission_mode is not None:
        if options.permission_mode not in PERMISSION_MODES:
            raise ValueError(f"unknown permission mode {options.permission_mode!r}")
        argv += ["--permission-mode", options.permission_mode]
    if options.allowed_tools:
        # Variadic: each tool is its own argument, so "Bash(git *)" keeps its space.
        tools = [_flag_value("--allowedTools", tool) for tool in options.allowed_tools]
        argv += ["--allowedTools", *tools]
    if options.resume_session_id is not None:
        argv += ["--resume", _flag_value("--resume", options.resume_session_id)]
    if options.model is not None:
        argv += ["--model", _flag_value("--model", options.model)]
    return argv


def build_env(
    *,
    config_dir: Path,
    path: str,
    api_key: str | None,
    base_url: str | None,
    oauth_token: str | None,
    max_api_retries: int,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The complete child environment: an allow-list, plus `extra` chosen by the caller."""
    base: dict[str, str | None] = {
        "PATH": path,
        # HOME too: the CLI and the tools it runs write dotfiles there, never in ours.
        "HOME": str(config_dir),
        "LANG": "C.UTF-8",
        "CLAUDE_CONFIG_DIR": str(config_dir),
        "ANTHROPIC_API_KEY": api_key or None,
        "ANTHROPIC_BASE_URL": base_url or None,
        "CLAUDE_CODE_OAUTH_TOKEN": oauth_token or None,
        # Without a cap the CLI retries a failing API for many minutes inside one attempt.
        "CLAUDE_CODE_MAX_RETRIES": str(max_api_retries),
        "DISABLE_TELEMETRY": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    return compose_env(base, dict(extra or {}))


def secret_values(env: Mapping[str, str]) -> list[str]:
    """The credential values in a child environment, for CliCommand.secrets."""
    return [env[name] for name in SECRET_ENV_NAMES if env.get(name)]


# -- verdicts ------------------------------------------------------------------------------


class Verdict(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TRANSIENT = "transient"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class RunSummary:
    verdict: Verdict
    error: str  # one human sentence; "" on success
    result_text: str
    cli_session_id: str | None
    cost_usd: Decimal | None
    input_tokens: int | None
    output_tokens: int | None
    num_turns: int | None
    duration_ms: int | None
    api_error_status: int | None


def summarize_run(outcome: RunOutcome) -> RunSummary:
    """Judge a run from its result's subtype and is_error; the exit code alone misleads
    (a SIGINT run exits 0, a max-turns run exits 1 with a perfectly good result)."""
    result = outcome.result
    if result is None:
        verdict, error = _judge_without_result(outcome)
        result = {}
    else:
        verdict, error = _judge_result(outcome, result)
    usage = result.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    session_id = result.get("session_id")
    return RunSummary(
        verdict=verdict,
        error=error,
        result_text=_str(result.get("result")),
        cli_session_id=session_id if isinstance(session_id, str) else outcome.session_id,
        cost_usd=_decimal(result.get("total_cost_usd")),
        input_tokens=_input_tokens(usage),
        output_tokens=_int(usage.get("output_tokens")),
        num_turns=_int(result.get("num_turns")),
        duration_ms=_int(result.get("duration_ms")),
        api_error_status=_int(result.get("api_error_status")),
    )


def _judge_result(outcome: RunOutcome, result: dict[str, Any]) -> tuple[Verdict, str]:
    subtype = result.get("subtype")
    if subtype == "success":
        if not result.get("is_error"):
            return Verdict.SUCCEEDED, ""
        return _judge_api_error(result)
    if subtype == "error_max_turns":
        limit = _from_errors(result, r"turns \((\d+)\)")
        what = f"its limit of {limit} turns" if limit else "its turn limit"
        return Verdict.FAILED, f"The agent stopped after reaching {what}."
    if subtype == "error_max_budget_usd":
        limit = _from_errors(result, r"budget \((\$[\d.]+)\)")
        what = f"its budget limit of {limit}" if limit else "its budget limit"
        return Verdict.FAILED, f"The agent stopped after reaching {what}."
    if subtype == "error_during_execution":
        # The CLI answers SIGINT with this subtype, so our own stop decides the verdict.
        if outcome.stop_reason not in (StopReason.EXITED, StopReason.RESULT):
            return _judge_without_result(outcome)
        detail = _first_error(result) or _last_line(outcome.stderr_tail)
        return Verdict.FAILED, _sentence("The CLI failed during execution", detail)
    return Verdict.FAILED, f"The CLI ended with an unexpected result ({_short(str(subtype))})."


def _judge_api_error(result: dict[str, Any]) -> tuple[Verdict, str]:
    status = _int(result.get("api_error_status"))
    detail = _first_line(_str(result.get("result")))
    if status is None:
        return Verdict.FAILED, _sentence("The CLI reported an error", detail)
    if status in _TRANSIENT_STATUSES or 500 <= status <= 599:
        return Verdict.TRANSIENT, _sentence(
            f"The model API was unavailable (HTTP {status})", detail
        )
    if status in _CREDENTIAL_STATUSES:
        return Verdict.FAILED, _sentence(
            f"The model API refused the credentials (HTTP {status})", detail
        )
    return Verdict.FAILED, _sentence(f"The model API rejected the request (HTTP {status})", detail)


def _judge_without_result(outcome: RunOutcome) -> tuple[Verdict, str]:
    limits = outcome.limits
    reason = outcome.stop_reason
    if reason is StopReason.WALL_TIMEOUT:
        limit = f" of {_duration(limits.wall_timeout_s)}" if limits else ""
        return Verdict.TIMED_OUT, f"The run hit its wall-clock limit{limit} and was stopped."
    if reason is StopReason.IDLE_TIMEOUT:
        limit = f" for {_duration(limits.idle_timeout_s)}" if limits else ""
        return Verdict.TIMED_OUT, f"The CLI printed nothing{limit} (idle limit) and was stopped."
    if reason is StopReason.REQUESTED:
        return Verdict.CANCELLED, "The run was cancelled."
    if reason is StopReason.OUTPUT_LIMIT:
        limit = f" than {_size(limits.max_output_bytes)}" if limits else ""
        return Verdict.FAILED, f"The CLI printed more output{limit} and was stopped."
    return Verdict.TRANSIENT, _exit_sentence(outcome)


def _exit_sentence(outcome: RunOutcome) -> str:
    code = outcome.exit_code
    if code is None:
        how = "The CLI ended"
    elif code < 0:
        how = f"The CLI was killed by {_signal_name(-code)}"
    else:
        how = f"The CLI exited with code {code}"
    return _sentence(f"{how} before reporting a result", _last_line(outcome.stderr_tail))


# -- small value helpers -------------------------------------------------------------------


def _sentence(head: str, detail: str) -> str:
    return f"{head}: {detail}" if detail else f"{head}."


def _short(text: str) -> str:
    return text if len(text) <= _MAX_DETAIL_CHARS else text[: _MAX_DETAIL_CHARS - 1] + "…"


def _first_line(text: str) -> str:
    return _short(text.strip().split("\n", 1)[0].strip())


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return _short(lines[-1]) if lines else ""


def _first_error(result: dict[str, Any]) -> str:
    errors = result.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], str):
        # "[ede_diagnostic] …" entries are internal breadcrumbs, not messages for people.
        if not errors[0].startswith("["):
            return _first_line(errors[0])
    return ""


def _from_errors(result: dict[str, Any], pattern: str) -> str | None:
    errors = result.get("errors")
    for error in errors if isinstance(errors, list) else ():
        match = re.search(pattern, error) if isinstance(error, str) else None
        if match:
            return match.group(1)
    return None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _size(num_bytes: int) -> str:
    if num_bytes >= 1_048_576:
        return f"{num_bytes / 1_048_576:g} MiB"
    return f"{num_bytes} bytes"


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    # Through str so 0.1 stays 0.1 rather than its binary expansion.
    return Decimal(str(value))


def _input_tokens(usage: dict[str, Any]) -> int | None:
    parts = [
        _int(usage.get(key))
        for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    ]
    known = [part for part in parts if part is not None]
    return sum(known) if known else None


# -- transcripts ---------------------------------------------------------------------------

_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
# From the CLI's own code (2.1.197): names longer than this are cut and given a hash suffix.
_MAX_PROJECT_NAME = 200


def project_dir_name(cwd: str) -> str:
    """The CLI's directory name for a cwd: every UTF-16 unit that is not [A-Za-z0-9]
    becomes "-"; past 200 characters, a prefix plus a base-36 Java-style string hash."""
    units = memoryview(cwd.encode("utf-16-le", "surrogatepass")).cast("H")
    name = "".join(chr(unit) if unit < 128 and chr(unit).isalnum() else "-" for unit in units)
    if len(name) <= _MAX_PROJECT_NAME:
        return name
    digest = 0
    for unit in units:
        digest = (digest * 31 + unit) & 0xFFFFFFFF
    signed = digest - (1 << 32) if digest >= (1 << 31) else digest
    return f"{name[:_MAX_PROJECT_NAME]}-{_base36(abs(signed))}"


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if number == 0:
            return out


def transcript_dir(config_dir: Path, cwd: Path) -> Path:
    """Where the CLI looks for a session's transcript when run with --resume from cwd."""
    # The CLI sees its cwd through getcwd(), i.e. with symlinks resolved.
    return config_dir / "projects" / project_dir_name(os.path.realpath(cwd))


def find_transcript(config_dir: Path, cli_session_id: str) -> Path | None:
    """The transcript a run wrote, wherever the CLI chose to put it; None if absent.

    An id that is not a plain token cannot be a CLI session id and is never globbed.
    """
    if not _SESSION_ID.fullmatch(cli_session_id):
        return None
    matches = list((config_dir / "projects").glob(f"*/{cli_session_id}.jsonl"))
    if not matches:
        return None
    return max(matches, key=lambda path: path.stat().st_mtime)
