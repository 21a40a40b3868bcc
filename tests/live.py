"""Starting and stopping real processes for integration tests, always by PID.

Every process is started in its own session (process group) so that stopping it also
stops whatever it spawned; `stop_process` escalates SIGTERM → SIGKILL and reaps.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from django.conf import settings
from django.db import connection

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def procfile_argv(process: str, env: Mapping[str, str]) -> list[str]:
    """argv of the Procfile's `process` line, variables filled from `env` the way honcho's
    shell would (the `${NAME}` and `${NAME:-default}` forms the Procfile uses)."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process and not line.startswith("#"):
            break
    else:
        raise LookupError(f"no {process!r} process in the Procfile")
    expanded = VARIABLE.sub(lambda m: env.get(m[1]) or (m[2] or ""), command.strip())
    argv = shlex.split(expanded)
    # The venv's interpreter, as `make run` puts the venv's bin first on PATH.
    if argv[0] == "python":
        return [sys.executable, *argv[1:]]
    if argv[0] == "celery":
        return [sys.executable, "-m", "celery", *argv[1:]]
    return argv


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    condition: Callable[[], T],
    timeout_s: float = 20.0,
    what: str = "a condition",
    *,
    poll_s: float | None = None,
) -> T:
    """Poll `condition` until it returns something truthy; fail with `what` on timeout.
    Polls back off from 10 ms to 200 ms, or keep to `poll_s` when given."""
    deadline = time.monotonic() + timeout_s
    interval = poll_s or 0.01
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval)
        if poll_s is None:
            interval = min(interval * 1.5, 0.2)


def test_database_url() -> str:
    """A DATABASE_URL naming the database pytest-django set up, for child processes."""
    db = settings.DATABASES["default"]
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = f"{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}"
    return f"postgres://{user}{password}@{host}/{db['NAME']}"


def child_env(**overrides: str) -> dict[str, str]:
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "DJANGO_SETTINGS_MODULE": "agentsite.settings",
        "DJANGO_DEBUG": "1",
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "PYTHONUNBUFFERED": "1",
        "LOG_LEVEL": "INFO",
    }
    for name in ("AGENT_WORKSPACE_ROOT",):
        env[name] = str(getattr(settings, name))
    env.update(overrides)
    return env


@dataclass
class LiveProcess:
    name: str  # for logs; a Celery worker's is its node name
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_process(
    name: str, argv: list[str], env: Mapping[str, str], log_dir: Path | None = None
) -> LiveProcess:
    log_dir = log_dir or ARTIFACTS / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{time.strftime('%H%M%S')}-{os.getpid()}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(  # noqa: S603
            argv,
            cwd=ROOT,
            env=dict(env),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return LiveProcess(name, process, log_path)


def stop_process(live: LiveProcess, sig: int = signal.SIGTERM, grace_s: float = 15.0) -> int:
    """Signal the process, wait, then SIGKILL its whole group; always reaps.

    The signal goes to the process alone, as honcho, systemd or docker deliver it: a
    Celery worker's pool processes must hear of a shutdown from their main process, or
    they die mid-job and the main process reports them killed.
    """
    process = live.process
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, sig)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
    # Whatever is left of the group (the process or its children) goes now.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    return process.wait()


def http_ok(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=1.0).status_code < 500
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def asgi_server(env: Mapping[str, str], name: str = "web") -> Iterator[tuple[str, LiveProcess]]:
    """The Procfile's web server (uvicorn) on a free port; yields its base URL."""
    with asgi_server_on_port(env, free_port(), name) as served:
        yield served


# --- WebSocket clients (real `websockets` sync clients against asgi_server) -----------


def ws_connect(
    base_url: str,
    path: str,
    *,
    token: str | None = None,
    cookie: str | None = None,
    origin: str | None = None,
) -> Any:
    """A connected `websockets` sync client; `origin`, `token` and `cookie` are optional."""
    from websockets.sync.client import connect

    headers = {}
    if token is not None:
        headers["Authorization"] = f"Token {token}"
    if cookie is not None:
        headers["Cookie"] = cookie
    return connect(
        "ws" + base_url.removeprefix("http") + path,
        origin=origin,  # type: ignore[arg-type]
        additional_headers=headers,
        open_timeout=10,
        close_timeout=5,
        max_size=None,
    )


def ws_recv(ws: Any, timeout_s: float = 15.0) -> dict[str, Any]:
    """The next JSON message; TimeoutError when none comes in time."""
    return json.loads(ws.recv(timeout=timeout_s))


def ws_recv_until(
    ws: Any, condition: Callable[[dict[str, Any]], bool], timeout_s: float = 15.0
) -> list[dict[str, Any]]:
    """Messages up to and including the first one matching `condition`."""
    deadline = time.monotonic() + timeout_s
    messages: list[dict[str, Any]] = []
    while True:
        message = ws_recv(ws, max(deadline - time.monotonic(), 0.001))
        messages.append(message)
        if condition(message):
            return messages


def wait_until_dashboard_live(ws: Any, owner: Any, timeout_s: float = 30.0) -> set[int]:
    """The dashboard socket joins its user's group after the handshake and sends nothing
    until a change, so a change made before it joined is never sent: create tasks until
    one's change arrives. Returns the ids of the tasks created (a late change of one may
    still come)."""
    from tasks_app.models import Source
    from tasks_app.services.tasks import task_create

    created: set[int] = set()

    def change_seen() -> bool:
        created.add(task_create(owner=owner, prompt="stay queued", source=Source.API).pk)
        try:
            return ws_recv(ws, timeout_s=1)["type"] == "status"
        except TimeoutError:
            return False

    wait_until(change_seen, timeout_s, "the dashboard socket to get a status change")
    return created


def ws_recv_until_closed(ws: Any, timeout_s: float = 15.0) -> tuple[list[dict[str, Any]], int]:
    """Every message until the server closes; returns them with the close code."""
    from websockets.exceptions import ConnectionClosed

    deadline = time.monotonic() + timeout_s
    messages: list[dict[str, Any]] = []
    while True:
        try:
            messages.append(ws_recv(ws, max(deadline - time.monotonic(), 0.001)))
        except ConnectionClosed as closed:
            return messages, closed.rcvd.code if closed.rcvd else 1006


def ws_close_code(base_url: str, path: str, timeout_s: float = 15.0, **auth: Any) -> int:
    """Open a socket that the server is expected to refuse; returns its close code."""
    with ws_connect(base_url, path, **auth) as ws:
        _, code = ws_recv_until_closed(ws, timeout_s)
    return code


# --- A web server on a port chosen by the caller ---------------------------------------


@contextlib.contextmanager
def asgi_server_on_port(
    env: Mapping[str, str], port: int, name: str = "web"
) -> Iterator[tuple[str, LiveProcess]]:
    """asgi_server on a given port: a web server restarted where its clients (a browser
    page reconnecting to the same URL) expect it. The port must be free again."""
    argv = procfile_argv("web", {**env, "BIND_HOST": "127.0.0.1", "PORT": str(port)})
    live = start_process(name, argv, env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: live.process.poll() is not None or http_ok(url + "/healthz"),
            30,
            f"{name} to answer /healthz on port {port}",
        )
        if live.process.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{live.log()}")
        yield url, live
    finally:
        stop_process(live)
