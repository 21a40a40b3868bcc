"""The agent sandbox, tried the way an attacker would: the real CLI with Bash allowed,
steered by the scripted model into probing what it must not reach. What comes back to the
model (the tool result, which a prompt-injected agent would send on) must hold none of it.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import AbstractUser

from tasks_app.models import AgentSession, Source, Task, TaskStatus
from tasks_app.services.sessions import session_create
from tasks_app.services.tasks import task_create
from tests.engine import celery_worker, engine_env, wait_for_status, wait_until_finished
from tests.factories import make_user
from tests.fakes.anthropic_api import FakeAnthropic, Text, ToolUse
from tests.live import ROOT, LiveProcess

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = TaskStatus
REAL_KEY = "sk-ant-test-0123456789abcdef"  # what engine_env gives the worker
GITHUB_TOKEN = "ghp_sandboxprobe0123456789abcdefghijkl"
WEBHOOK_SECRET = "whsec-sandbox-probe-5f1d2c"
SANDBOX_UID = 64100


class AllowedHost:
    """A local HTTP server the sandbox's allow-list names: the one thing it may reach."""

    BODY = b"hello from the allowed host"

    def __init__(self) -> None:
        body = self.BODY

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - stdlib naming
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> AllowedHost:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def allowed_host() -> Iterator[AllowedHost]:
    with AllowedHost() as host:
        yield host


@pytest.fixture
def sandbox_worker(
    fake_model: FakeAnthropic, workspace_root: Path, allowed_host: AllowedHost
) -> Iterator[LiveProcess]:
    env = engine_env(
        fake_model.base_url,
        workspace_root,
        AGENT_ALLOWED_TOOLS="Bash",
        GITHUB_TOKEN=GITHUB_TOKEN,
        GITHUB_WEBHOOK_SECRET=WEBHOOK_SECRET,
        AGENT_SANDBOX_PIDS_MAX="128",
        AGENT_SANDBOX_MEMORY_MB="512",
        # A listed name that resolves to loopback must still be refused.
        AGENT_SANDBOX_ALLOW_HOSTS=f"127.0.0.1:{allowed_host.port},localhost:6379",
    )
    with celery_worker(env, concurrency=3) as live:
        yield live


def run_bash(
    fake_model: FakeAnthropic,
    owner: AbstractUser,
    marker: str,
    command: str,
    session: AgentSession | None = None,
) -> tuple[Task, str]:
    """Have the model ask for `command` in Bash; returns the task and the tool's output
    as the model received it."""
    fake_model.script(marker, ToolUse("Bash", {"command": command, "description": "probe"}),
                      Text("done"))  # fmt: skip
    task = task_create(owner=owner, prompt=f"{marker} probe", source=Source.API, session=session)
    task = wait_for_status(task.pk, S.terminal(), timeout_s=90)
    return task, tool_output(fake_model, marker)


def tool_output(fake_model: FakeAnthropic, marker: str) -> str:
    """The latest tool result the model received in `marker`'s conversation."""
    for request in reversed(fake_model.requests(marker)):
        for message in reversed(request.messages):
            content = message.get("content")
            for block in content if isinstance(content, list) else ():
                if block.get("type") == "tool_result":
                    return str(block.get("content"))
    raise AssertionError(f"no tool result reached the model for {marker}")


def other_owners_workspace(workspace_root: Path) -> tuple[Path, str]:
    """Another user's session with a file in its workspace, owned as the sandbox would
    own it: only the mount namespace, not file permissions, stands in the way."""
    session = session_create(owner=make_user("victim"), title="victim's", source=Source.API)
    workspace = workspace_root / session.workspace
    workspace.mkdir()
    secret = "victim-secret-7c0ffee"
    (workspace / "secret.txt").write_text(secret)
    for path in (workspace, workspace / "secret.txt"):
        os.chown(path, SANDBOX_UID, SANDBOX_UID)
    return workspace, secret


def host_addresses() -> list[str]:
    """This machine's own non-loopback addresses (the service listens on some of them)."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.connect(("10.255.255.255", 1))
        return [udp.getsockname()[0]]
    return []


def test_agent_sees_no_other_workspace_project_file_or_process_environment(
    sandbox_worker, fake_model, owner, workspace_root
):
    victim_dir, victim_secret = other_owners_workspace(workspace_root)
    secret_key = (ROOT / "var" / "secret_key").read_text().strip()
    probe = (
        f"id; cat {victim_dir}/secret.txt; ls -la {workspace_root}; "
        f"cat {ROOT}/var/secret_key; ls {ROOT}; cat {ROOT}/agentsite/settings.py; "
        f"cat /proc/{sandbox_worker.pid}/environ; "
        "for f in /proc/*/environ; do echo \"== $f\"; tr '\\0' '\\n' < $f; done; "
        "ps -eo pid,args; cat /etc/shadow; ls /root"
    )
    task, output = run_bash(fake_model, owner, "[peek]", probe)
    assert task.status == S.SUCCEEDED, task.error
    assert "uid=1000(agent)" in output  # the probe ran, as the sandbox's own user
    assert f"{victim_dir}/secret.txt: No such file or directory" in output
    for leaked in (victim_secret, secret_key, "DJANGO_SETTINGS_MODULE", "environ.Env"):
        assert leaked not in output
    for leaked in (REAL_KEY, GITHUB_TOKEN, WEBHOOK_SECRET, "DATABASE_URL", "REDIS_URL"):
        assert leaked not in output
    assert "== /proc/1/environ" in output  # it listed the environments it could see
    for process in ("celery", "uvicorn", "postgres", "redis-server", "pytest"):
        assert process not in output
    assert "root:" not in output  # /etc/shadow is simply not there


def test_agent_cannot_reach_the_service_infrastructure_only_the_allowed_host(
    sandbox_worker, fake_model, owner, allowed_host
):
    targets = [("127.0.0.1", port) for port in (5432, 6379, 5672, 8000, 5555)]
    targets += [(address, 5432) for address in host_addresses()]
    connect_all = "; ".join(f"probe('{host}', {port})" for host, port in targets)
    script = f"""
import socket
def probe(host, port):
    s = socket.socket(); s.settimeout(3)
    try:
        s.connect((host, port)); print(f"OPEN {{host}}:{{port}}")
    except OSError as e:
        print(f"closed {{host}}:{{port}} {{e}}")
    finally:
        s.close()
def via_proxy(target):
    s = socket.create_connection(("127.0.0.1", 47771), timeout=10)
    s.sendall(f"CONNECT {{target}} HTTP/1.1\\r\\nHost: {{target}}\\r\\n\\r\\n".encode())
    print("proxy", target, s.recv(4096).decode(errors="replace").replace("\\r\\n", " | "))
    s.close()
{connect_all}
for target in ("127.0.0.1:5432", "localhost:6379", "example.com:443"):
    via_proxy(target)
"""
    command = (
        f"python3 - <<'EOF'\n{script}\nEOF\n"
        f"curl -sS --noproxy '' http://127.0.0.1:{allowed_host.port}/"
    )
    task, output = run_bash(fake_model, owner, "[net]", command)
    assert task.status == S.SUCCEEDED, task.error
    assert "OPEN" not in output
    for host, port in targets:
        assert f"closed {host}:{port}" in output
    refusals = [line for line in output.splitlines() if line.startswith("proxy ")]
    assert len(refusals) == 3 and all("403 Forbidden" in line for line in refusals)
    assert "127.0.0.1:5432 is not on the sandbox's allow-list" in refusals[0]
    assert "localhost resolves to a loopback or private address" in refusals[1]
    assert "example.com:443 is not on the sandbox's allow-list" in refusals[2]
    assert AllowedHost.BODY.decode() in output


def test_real_key_never_enters_and_a_run_token_is_refused_once_its_run_ended(
    sandbox_worker, fake_model, owner
):
    env_probe = (
        "env; tr '\\0' '\\n' < /proc/self/environ; "
        "grep -rl sk-ant- $HOME $CLAUDE_CONFIG_DIR /tmp 2>/dev/null; echo scanned"
    )
    first, output = run_bash(fake_model, owner, "[key]", env_probe)
    assert first.status == S.SUCCEEDED, first.error
    assert REAL_KEY not in output and "scanned" in output
    tokens = set(re.findall(r"sk-agentsite-run-[A-Za-z0-9_-]+", output))
    assert len(tokens) == 1, output
    # The model got the real key from the gateway, never the run's token.
    assert {r.headers.get("x-api-key") for r in fake_model.requests("[key]")} == {REAL_KEY}
    (token,) = tokens
    replay = (
        f"curl -sS -H 'x-api-key: {token}' -H 'content-type: application/json' "
        "-d '{}' http://127.0.0.1:47770/v1/messages"
    )
    second, output = run_bash(fake_model, owner, "[replay]", replay)
    assert second.status == S.SUCCEEDED, second.error
    assert "authentication_error" in output and "model gateway" in output
    assert len(fake_model.requests("[replay]")) == 2  # the CLI's own two; not the replay


def test_writes_outside_the_workspace_fail(sandbox_worker, fake_model, owner, workspace_root):
    victim_dir, _ = other_owners_workspace(workspace_root)
    targets = [
        "/usr/pwned",
        "/etc/pwned",
        f"{ROOT}/pwned",
        f"{workspace_root}/pwned",
        f"{victim_dir}/pwned",
        f"{ROOT}/node_modules/pwned",
    ]
    loop = " ".join(targets)
    command = (
        f'for p in {loop}; do (echo x > $p) 2>/dev/null && echo "WROTE $p" '
        '|| echo "DENIED $p"; done; echo mine > inside.txt; '
        "echo scratch > /tmp/t; echo home > ~/h; cat /tmp/t ~/h"
    )
    task, output = run_bash(fake_model, owner, "[write]", command)
    assert task.status == S.SUCCEEDED, task.error
    # Under the sandbox's private /tmp (a checkout in /tmp) a write lands in that tmpfs;
    # anywhere else it is refused. Either way nothing reaches the host.
    for target in targets:
        assert f"DENIED {target}" in output or target.startswith("/tmp/")
    assert not any(Path(target).exists() for target in targets)
    assert (workspace_root / task.session.workspace / "inside.txt").read_text() == "mine\n"
    assert "scratch\nhome" in output  # the private /tmp and HOME are writable


def test_fork_bomb_and_memory_hog_fail_with_the_limit_named_while_others_run(
    sandbox_worker, fake_model, workspace_root
):
    bomber, hog, bystander = (make_user(name) for name in ("bomber", "hog", "bystander"))
    fake_model.script("[bomb]", ToolUse("Bash", {"command": "b() { b | b & }; b; sleep 20"}),
                      Text("done"))  # fmt: skip
    fake_model.script("[hog]", ToolUse("Bash", {"command": "python3 -c 'x = bytearray(2**31)'"}),
                      Text("done"))  # fmt: skip
    fake_model.script("[calm]", Text("all is well"))
    tasks = [
        task_create(owner=user, prompt=f"{marker} go", source=Source.API)
        for user, marker in ((bomber, "[bomb]"), (hog, "[hog]"), (bystander, "[calm]"))
    ]
    bomb, memory, calm = wait_until_finished([t.pk for t in tasks], timeout_s=120)
    assert bomb.status == S.FAILED and "process limit (128 processes)" in bomb.error
    assert memory.status == S.FAILED and "memory limit (512 MiB)" in memory.error
    assert calm.status == S.SUCCEEDED and calm.result_text == "all is well"
    assert sandbox_worker.process.poll() is None
    follow = task_create(owner=bystander, prompt="[calm] again", source=Source.API)
    assert wait_for_status(follow.pk, S.terminal()).status == S.SUCCEEDED


def _sleepers() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError):
            if entry.isdigit() and b"sleep\x00" in Path(f"/proc/{entry}/cmdline").read_bytes():
                args = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\x00")
                if args[1:2] and args[1].startswith(b"98"):
                    found.append(int(entry))
    return found


def test_background_and_daemonized_processes_end_with_the_task(sandbox_worker, fake_model, owner):
    command = (
        "sleep 987 & setsid sleep 986 & ( ( sleep 985 & ) & ); "
        "nohup sleep 984 >/dev/null 2>&1 & disown; sleep 0.5; ps -eo args | grep -c '^sleep 98'"
    )
    task, output = run_bash(fake_model, owner, "[daemons]", command)
    assert task.status == S.SUCCEEDED, task.error
    assert output.strip() == "4"  # all four were running inside
    assert _sleepers() == []  # and none outlived the task


def test_workspace_git_and_python_work_and_a_follow_up_sees_the_files(
    sandbox_worker, fake_model, owner, workspace_root
):
    session = session_create(owner=owner, title="positive", source=Source.API)
    make = (
        "echo hello > notes.txt && git init -q && git add notes.txt && "
        "git -c user.email=a@example.com -c user.name=agent commit -qm first && "
        "python3 -c 'print(6 * 7)'"
    )
    # The fake follows a conversation by its first prompt: the follow-up's turns come
    # from the same script.
    fake_model.script(
        "[make]",
        ToolUse("Bash", {"command": make}),
        Text("made"),
        ToolUse("Bash", {"command": "cat notes.txt; git log --format=%s"}),
        Text("seen"),
    )
    first = task_create(owner=owner, prompt="[make] it", source=Source.API, session=session)
    first = wait_for_status(first.pk, S.terminal(), timeout_s=90)
    assert first.status == S.SUCCEEDED, first.error
    assert tool_output(fake_model, "[make]").strip() == "42"
    assert (workspace_root / session.workspace / "notes.txt").read_text() == "hello\n"
    follow_up = task_create(owner=owner, prompt="and now?", source=Source.API, session=session)
    follow_up = wait_for_status(follow_up.pk, S.terminal(), timeout_s=90)
    assert follow_up.status == S.SUCCEEDED, follow_up.error
    assert follow_up.result_text == "seen"
    # The agent's own commit, on the session's first one (every session is a repository).
    log = tool_output(fake_model, "[make]").splitlines()
    assert log == ["hello", "first", "Start of the session"]


def test_cgroups_of_finished_runs_are_removed(sandbox_worker, fake_model, owner):
    fake_model.script("[tidy]", Text("ok"))
    task = task_create(owner=owner, prompt="[tidy] hi", source=Source.API)
    assert wait_for_status(task.pk, S.terminal()).status == S.SUCCEEDED
    left = [
        path
        for controller in ("pids", "memory", "cpu")
        for path in Path("/sys/fs/cgroup", controller).rglob(f"agentsite-t{task.pk}a*")
    ]
    assert left == []
