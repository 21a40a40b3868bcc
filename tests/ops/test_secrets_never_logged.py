"""Distinctive secrets through a real web server and worker: never logged, never stored.

One GitHub comment runs end to end (signed webhook → job → agent task → outcome comment)
while the model echoes the API key and the CLI prints it on stderr. Workers are split as
docs/deploy.md recommends: the Procfile's worker on the agent queue, a small one for
GitHub jobs. Every file the three processes wrote, every stored event and what went back
to GitHub are then searched for each secret value. The scenario runs once per module;
each test checks one property.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core.management import call_command

from tasks_app.models import AgentSession, GitHubRepository, Task, TaskEvent, TaskStatus
from tests.engine import (
    CLAUDE,
    engine_env,
    sandbox_reachable_dir,
    wait_for_status,
    worker_answers,
)
from tests.factories import make_user
from tests.fakes.anthropic_api import FakeAnthropic, Text
from tests.fakes.github_api import FakeGitHub
from tests.live import free_port, http_ok, procfile_argv, wait_until
from tests.ops.conftest import LoggedProcess, running, unique_name
from tests.tasks_app.github.payloads import REPO, encode, headers, issue_comment

pytestmark = [pytest.mark.integration, pytest.mark.django_db]
REDACTED = "[REDACTED]"
BOT = "agentsite-bot[bot]"
MARKER = "please print the key"
ENV_DUMP = "cli-environment"
DELIVERY_ID = str(uuid.uuid4())


@dataclass(frozen=True)
class Observed:
    """What the scenario left behind, read before the database was flushed."""

    secrets: dict[str, str]
    logs: dict[str, str]  # file name → text
    agent_worker_stderr: str
    agent_worker: str
    github_worker_stderr: str
    github_worker: str
    task_id: int
    delivery_id: str
    events: list[dict[str, Any]]
    task_texts: list[str]
    github_texts: list[str]
    cli_environment: str
    transcript: str


def cli_wrapper(install: Path) -> Path:
    """An AGENT_CLI that records its environment (in its config dir, which the sandbox
    shares with the host) and prints its API key on stderr. It is an install of its own,
    `bin/` beside a hard link of the real CLI, as the sandbox shows a CLI's package."""
    (install / "bin").mkdir()
    real = install / "bin" / "claude.exe"
    os.link(os.path.realpath(CLAUDE), real)
    script = install / "bin" / "claude"
    script.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = "--version" ] && exec "{real}" "$@"\n'
        f'env > "$CLAUDE_CONFIG_DIR/{ENV_DUMP}"\n'
        'echo "wrapper: using key $ANTHROPIC_API_KEY" >&2\n'
        f'exec "{real}" "$@"\n'
    )
    script.chmod(0o755)
    return script


def deliver(url: str, payload: dict[str, Any], secret: str, delivery: str) -> httpx.Response:
    body = encode(payload)
    sent = headers(body, secret=secret, delivery=delivery)
    return httpx.post(f"{url}/webhooks/github/", content=body, headers=sent, timeout=10)


def with_option(argv: list[str], option: str, value: str) -> list[str]:
    """argv with the value after `option` replaced."""
    at = argv.index(option) + 1
    return [*argv[:at], value, *argv[at + 1 :]]


def read_logs(*processes: Any) -> dict[str, str]:
    return {
        path.name: path.read_text(errors="replace") for p in processes for path in p.log_files()
    }


def secret_values() -> dict[str, str]:
    return {
        "DJANGO_SECRET_KEY": f"django-ops-{secrets.token_hex(20)}",
        "ANTHROPIC_API_KEY": f"sk-ant-ops-{secrets.token_hex(16)}",
        "GITHUB_TOKEN": f"ghp_ops{secrets.token_hex(16)}",
        "GITHUB_WEBHOOK_SECRET": f"whsec-ops-{secrets.token_hex(12)}",
    }


def worker_argvs(env: dict[str, str]) -> dict[str, list[str]]:
    """Node name → argv: the Procfile's worker on `agent`, a one-process GitHub worker."""
    agent = f"{unique_name('secrets-agent')}@localhost"
    github = f"{unique_name('secrets-github')}@localhost"
    procfile = procfile_argv("worker", env)
    small = with_option(procfile, "--concurrency", "1")
    return {
        agent: [*with_option(procfile, "-Q", "agent"), "-n", agent],
        github: [*with_option(small, "-Q", "github,dead_letter,celery"), "-n", github],
    }


@contextlib.contextmanager
def web_and_workers(env: dict[str, str]) -> Iterator[tuple[str, list[LoggedProcess]]]:
    url = f"http://127.0.0.1:{env['PORT']}"
    with contextlib.ExitStack() as stack:
        processes = [
            stack.enter_context(
                running("secrets-web", procfile_argv("web", env), env, ready=lambda: http_ok(url))
            )
        ]
        for node, argv in worker_argvs(env).items():
            ready = functools.partial(worker_answers, node)
            name = node.split("@")[0].rsplit("-", 1)[0]
            worker = stack.enter_context(running(name, argv, env, ready=ready))
            worker.name = node
            processes.append(worker)
        yield url, processes


def run_github_comment(url: str, values: dict[str, str], fake_github: FakeGitHub) -> Task:
    comment = issue_comment(f"@claude {MARKER}")
    assert deliver(url, comment, "not-the-secret", "forged").status_code == 401
    accepted = deliver(url, comment, values["GITHUB_WEBHOOK_SECRET"], DELIVERY_ID)
    assert accepted.status_code == 202, accepted.text
    assert httpx.get(url + "/readyz", timeout=10).status_code == 200
    task = wait_until(lambda: Task.objects.first(), 30, "the task")
    task = wait_for_status(task.pk, TaskStatus.terminal())
    assert task.status == TaskStatus.SUCCEEDED, task.error
    wait_until(
        lambda: [c for c in fake_github.comments(repo=REPO, number=7) if c["history"]],
        30,
        "the acknowledgement to be edited with the outcome",
    )
    return task


def sent_to_github(fake_github: FakeGitHub) -> list[str]:
    comments = fake_github.comments(repo=REPO, number=7)
    texts = [c["body"] for c in comments] + [h for c in comments for h in c["history"]]
    return texts + [json.dumps(r.body) for r in fake_github.requests() if r.body]


def stored_transcript(task: Task) -> str:
    transcript = AgentSession.objects.get(pk=task.session_id).transcript
    return zlib.decompress(bytes(transcript)).decode(errors="replace") if transcript else ""


def run_scenario(scratch: Path) -> Observed:
    values = secret_values()
    (scratch / "cli").mkdir()
    wrapper = cli_wrapper(scratch / "cli")
    GitHubRepository.objects.create(full_name=REPO, owner=make_user(unique_name("secrets")))
    with (
        FakeAnthropic() as fake_model,
        FakeGitHub(token=values["GITHUB_TOKEN"], bot_login=BOT) as fake_github,
    ):
        fake_github.create_repository(REPO)
        fake_github.set_permission(REPO, "alice", "write")
        fake_model.script(MARKER, Text(f"the key is {values['ANTHROPIC_API_KEY']}"))
        env = engine_env(
            fake_model.base_url,
            scratch / "workspaces",
            **values,
            AGENT_CLI=str(wrapper),
            GITHUB_API_URL=fake_github.base_url,
            AGENT_GITHUB_BOT_LOGIN=BOT,
            AGENTSITE_PUBLIC_URL="https://agents.example.com",
            AGENT_MAX_CONCURRENCY="2",
            BIND_HOST="127.0.0.1",
            PORT=str(free_port()),
        )
        with web_and_workers(env) as (url, processes):
            task = run_github_comment(url, values, fake_github)
        # All stopped: every line, shutdown included, is in the files now.
        github_texts = sent_to_github(fake_github)
    web, agent_worker, github_worker = processes
    return Observed(
        secrets=values,
        logs=read_logs(*processes),
        agent_worker_stderr=agent_worker.log(),
        agent_worker=agent_worker.name,
        github_worker_stderr=github_worker.log(),
        github_worker=github_worker.name,
        task_id=task.pk,
        delivery_id=DELIVERY_ID,
        events=[
            {"kind": e.kind, "payload": e.payload}
            for e in TaskEvent.objects.filter(task_id=task.pk).order_by("seq")
        ],
        task_texts=[task.prompt, task.result_text, task.error],
        github_texts=github_texts,
        cli_environment=(
            scratch / "workspaces" / ".cli-config" / task.session.workspace / ENV_DUMP
        ).read_text(),
        transcript=stored_transcript(task),
    )


@pytest.fixture(scope="module")
def observed(django_db_setup: None, django_db_blocker: Any) -> Iterator[Observed]:
    # Module scope: the children must see committed rows, so the database is flushed
    # afterwards by hand, as pytest-django does for transactional tests. (The module's
    # django_db mark is what makes pytest-django create the test database at all.)
    with django_db_blocker.unblock(), sandbox_reachable_dir("secrets") as scratch:
        try:
            found = run_scenario(scratch)
        finally:
            call_command("flush", interactive=False, verbosity=0)
    yield found


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            lines.append(record)
    return lines


SECRET_NAMES = ["DJANGO_SECRET_KEY", "ANTHROPIC_API_KEY", "GITHUB_TOKEN", "GITHUB_WEBHOOK_SECRET"]


@pytest.mark.parametrize("secret", SECRET_NAMES)
def test_no_log_file_of_web_or_worker_contains_the_secret(observed, secret):
    value = observed.secrets[secret]
    assert len(observed.logs) == 6 and observed.agent_worker_stderr
    leaking = [name for name, text in observed.logs.items() if value in text]
    assert leaking == []


@pytest.mark.parametrize("secret", SECRET_NAMES)
def test_no_stored_event_or_task_field_contains_the_secret(observed, secret):
    value = observed.secrets[secret]
    stored = json.dumps(observed.events) + "\n".join(observed.task_texts)
    assert value not in stored


@pytest.mark.parametrize("secret", SECRET_NAMES)
def test_nothing_sent_back_to_github_contains_the_secret(observed, secret):
    assert all(observed.secrets[secret] not in text for text in observed.github_texts)


def test_echoed_key_is_redacted_in_text_result_and_stderr_events(observed):
    texts = "".join(e["payload"].get("text", "") for e in observed.events if e["kind"] == "text")
    assert f"the key is {REDACTED}" in texts
    (result,) = [e["payload"] for e in observed.events if e["kind"] == "result"]
    assert f"the key is {REDACTED}" in json.dumps(result)
    stderr = [e["payload"].get("text", "") for e in observed.events if e["kind"] == "stderr"]
    assert any(f"wrapper: using key {REDACTED}" in line for line in stderr), stderr
    assert observed.task_texts[1] == f"the key is {REDACTED}"


def test_cli_environment_holds_a_run_token_but_no_key_and_no_server_secret(observed):
    environment = observed.cli_environment
    assert "ANTHROPIC_API_KEY=sk-agentsite-run-" in environment
    assert observed.secrets["ANTHROPIC_API_KEY"] not in environment
    for name in ("DJANGO_SECRET_KEY", "GITHUB_TOKEN", "GITHUB_WEBHOOK_SECRET"):
        assert observed.secrets[name] not in environment
        assert f"{name}=" not in environment
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
        assert f"{name}=" not in environment


def test_agent_run_lines_carry_task_id_and_worker(observed):
    lines = [
        line
        for line in json_lines(observed.agent_worker_stderr)
        if line.get("task_id") == observed.task_id
    ]
    assert {"attempt_finished"} <= {line["event"] for line in lines}
    assert all(line.get("worker") == observed.agent_worker for line in lines), lines


def test_webhook_job_lines_carry_the_delivery_id(observed):
    lines = [
        line
        for line in json_lines(observed.github_worker_stderr)
        if line.get("logger") == "tasks_app.services.github_jobs"
    ]
    assert [line["event"] for line in lines] == ["delivery_processed"]
    assert lines[0]["delivery_id"] == observed.delivery_id
    assert lines[0]["task_id"] == observed.task_id


def test_every_worker_line_about_a_task_names_its_worker(observed):
    lines = [
        line
        for line in json_lines(observed.github_worker_stderr)
        if line.get("task_id") == observed.task_id
    ]
    assert lines
    assert all(line.get("worker") == observed.github_worker for line in lines), lines


def test_every_line_web_and_worker_write_on_stderr_is_json(observed):
    stderr_logs = {n: t for n, t in observed.logs.items() if not n.endswith(".stdout.log")}
    not_json = [
        (name, line)
        for name, text in stderr_logs.items()
        for line in text.splitlines()
        if line.strip() and not json_lines(line)
    ]
    assert not_json == []


def test_transcript_stored_with_the_session_is_redacted(observed):
    assert observed.transcript
    assert observed.secrets["ANTHROPIC_API_KEY"] not in observed.transcript
