"""The system under test: production settings, a fresh PostgreSQL database and Redis DB,
the Procfile's web and worker processes, a fake GitHub; all stopped by PID at the end.

The bench process itself runs Django with the same environment, to set up users and
to read results from the database (never through the server it measures).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench.httpclient import Endpoint
from bench.profiling import py_spy
from tests.tasks_app.github.payloads import SECRET as WEBHOOK_SECRET

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / "var" / "bench"
FAKE_CLI_SOURCE = Path(__file__).resolve().parent / "fake_cli.py"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/agentsite_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/9"
START_TIMEOUT_S = 60.0
SYSTEM_PYTHON = "/usr/bin/python3"
STOP_GRACE_S = 30.0
# Settings taken from the environment into the measured stack.
PASSED_ON = ("AGENT_STREAM_", "AGENT_SANDBOX")


@dataclass(frozen=True)
class StackConfig:
    database_url: str
    redis_url: str
    run_dir: Path

    @classmethod
    def from_environ(cls) -> StackConfig:
        """BENCH_DATABASE_URL and BENCH_REDIS_URL override the loopback defaults."""
        return cls(
            database_url=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
            redis_url=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL),
            run_dir=RUN_DIR,
        )

    @property
    def fake_cli(self) -> Path:
        # An install of its own: the sandbox shows a CLI's whole install (`bin/`'s parent),
        # which must not hold the workspaces.
        return self.run_dir / "fake-cli" / "bin" / "fake-claude"

    @property
    def scratch(self) -> Path:
        # Inside the fake CLI's install, which the agent sandbox shows the CLI (read
        # only): the files a held fake CLI waits for must be visible to it there.
        return self.fake_cli.parent.parent / "scratch"

    @property
    def logs(self) -> Path:
        return self.run_dir / "logs"


def worker_pool() -> str:
    """The pool every benchmark's worker uses unless it sets its own (AGENT_WORKER_POOL,
    else the service's default)."""
    return os.environ.get("AGENT_WORKER_POOL", "threads")


def worker_processes() -> int:
    """How many worker processes share a benchmark's slots (BENCH_WORKER_PROCESSES, 1):
    with AGENT_WORKER_POOL=threads, one per core is the layout docs/deploy.md suggests."""
    return int(os.environ.get("BENCH_WORKER_PROCESSES", "1"))


def one_connection_per_slot() -> dict[str, str]:
    """Worker settings for many slots on one PostgreSQL: a prefork pool process uses one
    connection at a time, but psycopg's pool (min_size 1, opened without waiting)
    connects twice on the first query, so 50 processes would hold 100, all of a default
    PostgreSQL; a pool of one per process holds exactly one. A threads pool's slots
    share their process's pool and give the connection back between writes."""
    return {"DATABASE_POOL_MAX_SIZE": "1"} if worker_pool() == "prefork" else {}


def pick_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(config: StackConfig, github_port: int) -> dict[str, str]:
    """Production settings on loopback; limits that would cap the load itself raised."""
    return {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "DJANGO_SETTINGS_MODULE": "agentsite.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SECURE_SSL_REDIRECT": "0",  # plain HTTP on loopback
        "DATABASE_URL": config.database_url,
        "REDIS_URL": config.redis_url,
        "CELERY_BROKER_URL": config.redis_url,
        "AGENT_CLI": str(config.fake_cli),
        "AGENT_WORKSPACE_ROOT": str(config.run_dir / "workspaces"),
        "PROMETHEUS_MULTIPROC_DIR": str(config.run_dir / "prometheus"),
        "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "GITHUB_TOKEN": "ghp_bench_0123456789",
        "GITHUB_API_URL": f"http://127.0.0.1:{github_port}",
        "ANTHROPIC_API_KEY": "sk-ant-bench-0123456789abcdef",
        "LOG_LEVEL": "INFO",
        # One user drives every benchmark: per-user caps would measure the caps.
        "AGENT_MAX_RUNNING_PER_USER": "1000",
        "AGENT_MAX_QUEUED_PER_USER": "100000",
        "AGENT_MAX_WS_PER_USER": "2000",
        "API_THROTTLE_RATE": "1000000/minute",
        "WEB_CONCURRENCY": "1",
        # `AGENT_WORKER_POOL=prefork python -m bench` measures everything on the prefork
        # pool (bench `slots` sets each worker's pool itself).
        "AGENT_WORKER_POOL": worker_pool(),
        # `AGENT_STREAM_PREVIEW_MS=0 python -m bench` measures the stream's other settings;
        # `AGENT_SANDBOX=off python -m bench` what the agent sandbox costs.
        **{name: value for name, value in os.environ.items() if name.startswith(PASSED_ON)},
    }


def install_fake_cli(target: Path) -> Path:
    """The fake CLI as an executable run with -I -S (fast start) by the system's Python,
    which the agent sandbox shows (it is stdlib only); else by this venv's."""
    target.parent.mkdir(parents=True, exist_ok=True)
    body = FAKE_CLI_SOURCE.read_text().split("\n", 1)[1]
    python = SYSTEM_PYTHON if os.access(SYSTEM_PYTHON, os.X_OK) else sys.executable
    target.write_text(f"#!{python} -IS\n{body}")
    target.chmod(0o755)
    return target


def reset_database(url: str) -> None:
    """Drop and recreate the bench database (never any other)."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name.startswith("agentsite_bench"):
        raise ValueError(f"refusing to drop {name!r}: the bench database must be agentsite_bench*")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def reset_redis(url: str) -> None:
    """FLUSHDB of the bench's own Redis DB index; other indexes are left alone."""
    import redis

    if urlsplit(url).path.strip("/") in ("", "0"):
        raise ValueError(f"refusing to flush Redis DB 0 ({url}); give the bench its own index")
    redis.Redis.from_url(url).flushdb()


def reset_run_dir(config: StackConfig) -> None:
    """Empty workspaces and metrics directories (the bench process has its own)."""
    run_dir = config.run_dir
    for path in (*(run_dir / n for n in ("workspaces", "prometheus", "prometheus-bench")),
                 config.scratch):  # fmt: skip
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
    config.logs.mkdir(parents=True, exist_ok=True)
    # WhiteNoise warns on every request when STATIC_ROOT does not exist.
    (ROOT / "var" / "staticfiles").mkdir(parents=True, exist_ok=True)


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


@dataclass(frozen=True)
class Services:
    """One benchmark's web process and worker processes, fresh for it."""

    web_url: str
    web: Any  # tests.live.LiveProcess
    workers: tuple[Any, ...]

    @property
    def worker(self) -> Any:
        """The first (for most benchmarks the only) worker."""
        return self.workers[0]

    @property
    def worker_pids(self) -> list[int]:
        return [worker.pid for worker in self.workers]

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint.from_url(self.web_url)


class Stack:
    """Fresh database and Redis DB and a fake GitHub for the run; web and worker per
    benchmark, so that no benchmark inherits another's pools, caches or queue."""

    def __init__(
        self,
        config: StackConfig,
        env: dict[str, str],
        github_port: int,
        profile: frozenset[str] = frozenset(),
    ) -> None:
        self.config = config
        self.env = env
        self.github_port = github_port
        self.profile = profile  # "web", "worker": sampled with py-spy while benchmarks run
        self._exit = contextlib.ExitStack()

    def __enter__(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit.close()

    def _start(self) -> None:
        from tests.live import wait_until

        reset_database(self.config.database_url)
        reset_redis(self.config.redis_url)
        migrate(self.env)
        github = [
            *(sys.executable, "-m", "tests.fakes.github_api", "--port", str(self.github_port)),
            *("--unknown-permission", "read"),
        ]
        fake = self._exit.enter_context(self.process("fake-github", github))
        wait_until(
            lambda: fake.process.poll() is not None or port_open(self.github_port),
            START_TIMEOUT_S,
            "the fake GitHub to listen",
        )
        if fake.process.poll() is not None:
            raise RuntimeError(f"the fake GitHub exited early; see {fake.log_path}")

    @contextlib.contextmanager
    def process(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Iterator:
        """A started process (own session, log in var/bench/logs), stopped by PID on exit."""
        from tests.live import start_process, stop_process

        live = start_process(name, argv, env or self.env, log_dir=self.config.logs)
        try:
            yield live
        finally:
            stop_process(live, grace_s=STOP_GRACE_S)

    @contextlib.contextmanager
    def services(
        self,
        name: str,
        concurrency: int,
        worker_env: dict[str, str] | None = None,
        web_processes: int = 1,
        env: dict[str, str] | None = None,
        processes: int | None = None,
    ) -> Iterator[Services]:
        """The Procfile's web with WEB_CONCURRENCY=web_processes, and its worker (or
        `processes` of them, by default BENCH_WORKER_PROCESSES, sharing `concurrency`
        slots, each its own node name), all with `env` added to the stack's; all answer
        (healthz, ping) before this yields."""
        from agentsite.celery import app
        from tests.live import http_ok, procfile_argv, wait_until

        processes = processes or worker_processes()
        if concurrency % processes:
            raise ValueError(f"{concurrency} slots do not split over {processes} workers")
        port = pick_port()
        shared_env = {**self.env, **(env or {})}
        web_env = {**shared_env, "WEB_CONCURRENCY": str(web_processes)}
        web_argv = procfile_argv("web", {**web_env, "BIND_HOST": "127.0.0.1", "PORT": str(port)})
        slots = str(concurrency // processes)
        worker_env = {**shared_env, "AGENT_MAX_CONCURRENCY": slots, **(worker_env or {})}
        names = [name] if processes == 1 else [f"{name}-{i}" for i in range(processes)]
        web_url = f"http://127.0.0.1:{port}"
        with contextlib.ExitStack() as running:
            web = running.enter_context(self.process(f"{name}-web", web_argv, web_env))
            workers = tuple(
                running.enter_context(
                    self.process(
                        worker_name,
                        [*procfile_argv("worker", worker_env), "-n", f"{worker_name}@localhost"],
                        worker_env,
                    )
                )
                for worker_name in names
            )
            nodes = [f"{worker_name}@localhost" for worker_name in names]

            def ready() -> bool:
                for live in (web, *workers):
                    if live.process.poll() is not None:
                        raise RuntimeError(f"{live.name} exited early; see {live.log_path}")
                answered = app.control.ping(destination=nodes, timeout=0.5)
                return http_ok(web_url + "/healthz") and len(answered) == len(nodes)

            wait_until(ready, START_TIMEOUT_S, f"{name}: web and workers to answer")
            with contextlib.ExitStack() as profiles:
                for target, live in (("web", web), ("worker", workers[0])):
                    if target in self.profile:
                        output = self.config.run_dir / "profiles" / f"{name}-{target}.raw"
                        spy = py_spy(live.pid, output, subprocesses=target == "worker")
                        profiles.enter_context(spy)
                yield Services(web_url, web, workers)
