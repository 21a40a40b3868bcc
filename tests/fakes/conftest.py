"""Fixtures: FakeAnthropic and FakeGitHub servers (in-process or as processes), a runner for
the real Claude Code CLI against the Anthropic one, and real git against the GitHub one."""

from __future__ import annotations

import base64
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.github_api import FakeGitHub

REPO_ROOT = Path(__file__).resolve().parents[2]
CLAUDE_BIN = REPO_ROOT / "node_modules" / ".bin" / "claude"
CLI_TIMEOUT_S = 60.0
FAKE_GITHUB_TOKEN = "ghs_fakeInstallationToken0123456789"
FAKE_GITHUB_BOT = "agentsite-bot[bot]"
GIT_TIMEOUT_S = 60.0


def basic_auth(token: str, user: str = "x-access-token") -> str:
    return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()


@dataclass(frozen=True)
class CliLine:
    """One stdout JSON line of the CLI and when (monotonic) the test read it."""

    read_at: float
    event: dict[str, Any]


@dataclass(frozen=True)
class CliRun:
    exit_code: int
    lines: list[CliLine]
    stderr: str

    @property
    def events(self) -> list[dict[str, Any]]:
        return [line.event for line in self.lines]

    @property
    def result(self) -> dict[str, Any]:
        results = [e for e in self.events if e.get("type") == "result"]
        assert results, f"no result line; exit {self.exit_code}; stderr: {self.stderr[-2000:]}"
        return results[-1]

    def text_deltas(self) -> list[CliLine]:
        return [line for line in self.lines if _is_text_delta(line.event)]


def _is_text_delta(event: dict[str, Any]) -> bool:
    inner = event.get("event", {}) if event.get("type") == "stream_event" else {}
    return inner.get("type") == "content_block_delta" and inner["delta"]["type"] == "text_delta"


@dataclass
class CliProcess:
    """A running CLI whose stdout lines a reader thread collects as they arrive."""

    popen: subprocess.Popen[str]
    lines: list[CliLine] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _readers: list[threading.Thread] = field(default_factory=list)

    def start_reading(self) -> None:
        # Both pipes are drained continuously so a chatty CLI can never block on a full pipe.
        for target in (self._read_stdout, self._read_stderr):
            reader = threading.Thread(target=target, name="cli-pipe-reader", daemon=True)
            reader.start()
            self._readers.append(reader)

    def _read_stdout(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            if raw.strip():
                line = CliLine(time.monotonic(), json.loads(raw))
                with self._lock:
                    self.lines.append(line)

    def _read_stderr(self) -> None:
        assert self.popen.stderr is not None
        for raw in self.popen.stderr:
            self.stderr.append(raw)

    def snapshot(self) -> list[CliLine]:
        with self._lock:
            return list(self.lines)

    def interrupt(self) -> None:
        """SIGINT to the CLI's own process group, like Ctrl-C."""
        os.killpg(self.popen.pid, signal.SIGINT)

    def finish(self, timeout_s: float = CLI_TIMEOUT_S) -> CliRun:
        try:
            exit_code = self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        for reader in self._readers:
            reader.join(timeout_s)
        return CliRun(exit_code, self.snapshot(), "".join(self.stderr))

    def kill(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)

    def close_pipes(self) -> None:
        for pipe in (self.popen.stdout, self.popen.stderr):
            if pipe is not None:
                pipe.close()


class ClaudeCli:
    """Runs `claude -p --output-format stream-json` in one workspace and config dir, with an
    allow-listed environment pointing at a fake API; every process started is stopped."""

    def __init__(self, *, base_url: str, workspace: Path, config_dir: Path, home: Path) -> None:
        self.base_url = base_url
        self.workspace = workspace
        self.config_dir = config_dir
        self.home = home
        self.max_retries = 1
        self.started: list[CliProcess] = []

    def env(self, **overrides: str) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "CLAUDE_CONFIG_DIR": str(self.config_dir),
            "ANTHROPIC_BASE_URL": self.base_url,
            "ANTHROPIC_API_KEY": "sk-test-fake-anthropic",
            "DISABLE_TELEMETRY": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "CLAUDE_CODE_MAX_RETRIES": str(self.max_retries),
        }
        return env | overrides

    def start(self, prompt: str, *args: str, env: dict[str, str] | None = None) -> CliProcess:
        argv = [str(CLAUDE_BIN), "-p", "--output-format", "stream-json", "--verbose"]
        argv += ["--include-partial-messages", *args]
        popen = subprocess.Popen(
            argv,
            cwd=self.workspace,
            env=self.env(**(env or {})),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, so SIGINT/SIGKILL reach children
        )
        process = CliProcess(popen)
        self.started.append(process)
        assert popen.stdin is not None
        popen.stdin.write(prompt)
        popen.stdin.close()
        process.start_reading()
        return process

    def run(self, prompt: str, *args: str, env: dict[str, str] | None = None) -> CliRun:
        return self.start(prompt, *args, env=env).finish()

    def stop_all(self) -> None:
        for process in self.started:
            process.kill()
            process.close_pipes()


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


ClaudeCliFactory = Callable[..., ClaudeCli]


@pytest.fixture
def claude_cli_factory(tmp_path: Path) -> Iterator[ClaudeCliFactory]:
    """Makes CLI runners with their own workspace, config dir and home under tmp_path."""
    if not CLAUDE_BIN.exists():
        pytest.skip(f"Claude Code CLI not installed at {CLAUDE_BIN} (run npm ci)")
    made: list[ClaudeCli] = []

    def make(*, base_url: str, name: str = "cli") -> ClaudeCli:
        dirs = {part: tmp_path / name / part for part in ("workspace", "config", "home")}
        for path in dirs.values():
            path.mkdir(parents=True)
        cli = ClaudeCli(
            base_url=base_url,
            workspace=dirs["workspace"],
            config_dir=dirs["config"],
            home=dirs["home"],
        )
        made.append(cli)
        return cli

    yield make
    for cli in made:
        cli.stop_all()


@pytest.fixture
def claude_cli(fake_anthropic: FakeAnthropic, claude_cli_factory: ClaudeCliFactory) -> ClaudeCli:
    return claude_cli_factory(base_url=fake_anthropic.base_url)


@dataclass(frozen=True)
class FakeProcess:
    popen: subprocess.Popen[str]
    base_url: str


def _read_listening_line(popen: subprocess.Popen[str], timeout_s: float) -> str:
    assert popen.stdout is not None
    ready, _, _ = select.select([popen.stdout], [], [], timeout_s)
    assert ready, f"fake process printed nothing within {timeout_s}s"
    line = popen.stdout.readline().strip()
    assert line.startswith("LISTENING "), f"unexpected first line {line!r}"
    return line.removeprefix("LISTENING ")


@contextmanager
def fake_process(module: str, *args: str) -> Iterator[FakeProcess]:
    """`python -m <module> --port 0 <args>` as its own process, killed by PID on the way out."""
    popen = subprocess.Popen(
        [sys.executable, "-m", module, "--port", "0", *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield FakeProcess(popen, _read_listening_line(popen, timeout_s=20))
    finally:
        if popen.poll() is None:
            popen.kill()
        popen.wait(10)
        assert popen.stdout is not None
        popen.stdout.close()


@pytest.fixture
def fake_anthropic_process() -> Iterator[FakeProcess]:
    """`python -m tests.fakes.anthropic_api --port 0` as its own process, stopped by PID."""
    with fake_process("tests.fakes.anthropic_api") as process:
        yield process


@pytest.fixture
def fake_github() -> Iterator[FakeGitHub]:
    """A FakeGitHub that wants FAKE_GITHUB_TOKEN and comments as FAKE_GITHUB_BOT."""
    with FakeGitHub(token=FAKE_GITHUB_TOKEN, bot_login=FAKE_GITHUB_BOT) as fake:
        yield fake


@pytest.fixture
def fake_github_process() -> Iterator[FakeProcess]:
    """`python -m tests.fakes.github_api` with the same token and bot, stopped by PID; drive
    it with FakeGitHubControl(fake_github_process.base_url)."""
    args = ("--token", FAKE_GITHUB_TOKEN, "--bot-login", FAKE_GITHUB_BOT)
    with fake_process("tests.fakes.github_api", *args) as process:
        yield process


@dataclass(frozen=True)
class GitClient:
    """Real git with no user or system configuration and no prompts, whose credentials are an
    `http.extraHeader` from the environment, never in a URL or a config file."""

    home: Path
    authorization: str | None = None
    config: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        settings = dict(self.config)
        if self.authorization is not None:
            settings["http.extraHeader"] = f"Authorization: {self.authorization}"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "LC_ALL": "C",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": "Agent",
            "GIT_AUTHOR_EMAIL": "agent@example.com",
            "GIT_COMMITTER_NAME": "Agent",
            "GIT_COMMITTER_EMAIL": "agent@example.com",
            "GIT_CONFIG_COUNT": str(len(settings)),
        }
        for index, (key, value) in enumerate(settings.items()):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
        return env

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """`git <args>`; the caller checks the exit code (failing is often the point)."""
        return subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )

    def ok(self, *args: str, cwd: Path | None = None) -> str:
        """`git <args>` that must succeed; its stdout, stripped."""
        result = self.run(*args, cwd=cwd)
        assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
        return result.stdout.strip()


@pytest.fixture
def git(tmp_path: Path) -> GitClient:
    """git sending `Authorization: Basic base64(x-access-token:FAKE_GITHUB_TOKEN)`."""
    home = tmp_path / "git-home"
    home.mkdir()
    return GitClient(home, basic_auth(FAKE_GITHUB_TOKEN))
