"""SIGTERM to the web server (the Procfile's uvicorn command): drain, then exit.

The slow request is /readyz, whose CLI check runs AGENT_CLI --version: here a script that
announces it started and then waits for the test to release it, so the request is
provably in flight while the server drains, without sleeping on a guess.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tasks_app.services.tokens import api_token_create
from tests.engine import sandbox_reachable_dir
from tests.factories import make_user
from tests.live import (
    child_env,
    free_port,
    http_ok,
    procfile_argv,
    wait_until,
    wait_until_dashboard_live,
    ws_connect,
    ws_recv_until_closed,
)
from tests.ops.conftest import LoggedProcess, running, unique_name

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
GRACEFUL_TIMEOUT_S = 30  # the Procfile's --timeout-graceful-shutdown
CLOSE_SERVICE_RESTART = 1012
# uvicorn (0.29+) restores the default handler after its graceful shutdown and re-raises
# the signal, so a clean stop on SIGTERM ends "killed by SIGTERM" (143 in a shell).
CLEAN_EXIT_CODES = {0, -signal.SIGTERM}


def slow_cli(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(script, started marker, release file): `--version` waits for the release (≤ 3.5 s,
    within readiness's 4 s limit for the CLI check)."""
    started, release = tmp_path / "cli-started", tmp_path / "cli-release"
    script = tmp_path / "slow-claude"
    script.write_text(
        "#!/bin/sh\n"
        f"touch '{started}'\n"
        "i=0\n"
        f"while [ ! -e '{release}' ] && [ $i -lt 35 ]; do sleep 0.1; i=$((i+1)); done\n"
        'echo "2.1.197 (Claude Code)"\n'
    )
    script.chmod(0o755)
    return script, started, release


@pytest.fixture
def web() -> Iterator[tuple[str, LoggedProcess, Path, Path]]:
    # Where the sandbox's user can reach it: /readyz also checks that a sandbox can show
    # the CLI's install.
    with sandbox_reachable_dir("slow-cli") as scratch:
        yield from _web(scratch)


def _web(scratch: Path) -> Iterator[tuple[str, LoggedProcess, Path, Path]]:
    script, started, release = slow_cli(scratch)
    port = free_port()
    env = child_env(AGENT_CLI=str(script), BIND_HOST="127.0.0.1", PORT=str(port))
    url = f"http://127.0.0.1:{port}"
    argv = procfile_argv("web", env)
    with running("web-shutdown", argv, env, ready=lambda: http_ok(url + "/healthz")) as live:
        yield url, live, started, release


def refuses_connections(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def wait_for_clean_exit(live: LoggedProcess, timeout_s: float) -> None:
    """Fails unless the process finished its shutdown itself within `timeout_s`."""
    code = live.process.wait(timeout_s)
    assert code in CLEAN_EXIT_CODES, f"exit code {code}\n{live.log()}"
    assert "Finished server process" in live.log()


def test_request_in_flight_at_sigterm_gets_its_full_response(web):
    url, live, cli_started, release = web
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(httpx.get, url + "/readyz", timeout=30)
        wait_until(cli_started.exists, 15, "the /readyz CLI check to start")
        os.kill(live.pid, signal.SIGTERM)
        wait_until(lambda: refuses_connections(url), 10, "the server to stop accepting")
        wait_until(
            lambda: "Waiting for connections to close" in live.log(),
            10,
            "the server to wait for the request in flight",
        )
        release.touch()
        released_at = time.monotonic()
        response = pending.result(timeout=30)
    assert response.status_code == 200
    assert response.json()["status"] == "ok" and response.json()["checks"]["cli"]["ok"]
    assert response.headers["connection"] == "close"
    wait_for_clean_exit(live, GRACEFUL_TIMEOUT_S + 5)
    print(f"process gone {time.monotonic() - released_at:.2f} s after the request was released")


def test_open_websocket_is_closed_with_1012_and_the_server_exits_in_time(web):
    url, live, _, _ = web
    owner = make_user(unique_name("ws-owner"))
    _, key = api_token_create(user=owner, name="shutdown")
    with ws_connect(url, "/ws/dashboard/", token=key) as ws:
        wait_until_dashboard_live(ws, owner)
        sigterm_at = time.monotonic()
        os.kill(live.pid, signal.SIGTERM)
        _, close_code = ws_recv_until_closed(ws, timeout_s=GRACEFUL_TIMEOUT_S)
        closed_after = time.monotonic() - sigterm_at
    assert close_code == CLOSE_SERVICE_RESTART
    wait_for_clean_exit(live, GRACEFUL_TIMEOUT_S + 5)
    print(f"socket closed {closed_after:.2f} s, process gone {time.monotonic() - sigterm_at:.2f} s")
    # Exited because the consumer finished, not because uvicorn cancelled it at 30 s.
    assert "timeout graceful shutdown exceeded" not in live.log()
