"""Shared pieces of the git workspace tests: a fake GitHub hosting a repository, worker
environments that use it, the agent writing files through Bash, commit inspection."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.engine import engine_env
from tests.fakes.anthropic_api import FakeAnthropic, Text, ToolUse
from tests.fakes.github_api import FakeGitHub
from tests.tasks_app.github.payloads import SECRET

TOKEN = "ghp_workspace_token_5e1f0c2a9b"
BOT = "agentsite-bot[bot]"
PUBLIC_URL = "https://agents.example.com"
REPO_FILES = {"README.md": "# widgets\n", "src/widget.py": "def widget():\n    return 1\n"}


def git_env(
    fake_model: FakeAnthropic, fake_github: FakeGitHub, workspace_root: Path, **extra: str
) -> dict[str, str]:
    return engine_env(
        fake_model.base_url,
        workspace_root,
        AGENT_ALLOWED_TOOLS="Bash",
        GITHUB_WEBHOOK_SECRET=SECRET,
        GITHUB_TOKEN=TOKEN,
        GITHUB_API_URL=fake_github.base_url,
        AGENT_GITHUB_BOT_LOGIN=BOT,
        AGENTSITE_PUBLIC_URL=PUBLIC_URL,
        # The whole session's deliveries share one repository and sender in Redis.
        AGENT_GITHUB_RATE_PER_REPO="100000/hour",
        AGENT_GITHUB_RATE_PER_SENDER="100000/hour",
        **extra,
    )


def bash(command: str, then: str = "done") -> tuple[ToolUse, Text]:
    return ToolUse("Bash", {"command": command, "description": "work"}), Text(then)


def commit_message(fake_github: FakeGitHub, full_name: str, ref: str) -> str:
    """The full message of the commit at `ref` in the fake's repository."""
    done = subprocess.run(
        ["git", "log", "-1", "--format=%an <%ae>%n%B", ref],
        cwd=fake_github.repo_path(full_name),
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def git_in(path: Path, *args: str) -> str:
    """git run by the test (root) in a repository the sandbox's user owns."""
    argv = ["git", "-c", "safe.directory=*", *args]
    done = subprocess.run(argv, cwd=path, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout
