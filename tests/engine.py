"""Real Celery worker and beat processes for integration tests, against the test database.

Timings are shortened through the environment (heartbeats, reaper, backoff) so that
fault tests finish in seconds; the code paths are the production ones.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from agentsite.celery import app as celery_app
from tasks_app.models import Task, TaskStatus
from tests.live import (
    ROOT,
    LiveProcess,
    child_env,
    procfile_argv,
    start_process,
    stop_process,
    wait_until,
)

CLAUDE = ROOT / "node_modules" / ".bin" / "claude"
FAST_TIMINGS = {
    "AGENT_HEARTBEAT_S": "0.5",
    "AGENT_STALE_AFTER_S": "4",
    "AGENT_REAPER_INTERVAL_S": "1",
    "AGENT_REDISPATCH_AFTER_S": "2",
    "AGENT_RETRY_BACKOFF_S": "0.4",
    "AGENT_RETRY_BACKOFF_MAX_S": "2",
    "AGENT_STOP_GRACE_S": "1",
    # Each check runs `claude --version` and builds an empty sandbox: a third of a CPU
    # second on this kind of machine, so not every half second in every worker.
    "AGENT_CLI_CHECK_INTERVAL_S": "10",
    "AGENT_SHUTDOWN_GRACE_S": "30",
}


@contextlib.contextmanager
def sandbox_reachable_dir(prefix: str) -> Iterator[Path]:
    """A scratch directory a sandbox can bind, under var/ as a real workspace root is:
    pytest's own tmp root is private (0700), and a worker running as root starts each
    sandbox as an unprivileged user, which must be able to walk down to the workspaces."""
    parent = ROOT / "var" / "test-workspaces"
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=parent))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def engine_env(model_url: str, workspace_root: Path, **overrides: str) -> dict[str, str]:
    settings = {
        "ANTHROPIC_BASE_URL": model_url,
        "ANTHROPIC_API_KEY": "sk-ant-test-0123456789abcdef",
        "AGENT_CLI": str(CLAUDE),
        "AGENT_WORKSPACE_ROOT": str(workspace_root),
        "AGENT_CLI_API_RETRIES": "1",
        **FAST_TIMINGS,
    }
    return child_env(**{**settings, **overrides})


def worker_argv(name: str, concurrency: int, queues: str) -> list[str]:
    """The Procfile's worker with this test's concurrency, queues and node name."""
    procfile = procfile_argv("worker", {"AGENT_MAX_CONCURRENCY": str(concurrency)})
    # Later options win: the test's queue list replaces the Procfile's.
    return [*procfile, "-Q", queues, "-n", name, "--without-gossip", "--without-mingle"]


def worker_answers(name: str) -> bool:
    return bool(celery_app.control.ping(destination=[name], timeout=0.3))


@contextlib.contextmanager
def celery_worker(
    env: dict[str, str],
    *,
    concurrency: int = 2,
    queues: str = "agent,github,dead_letter,celery",
    name: str | None = None,
) -> Iterator[LiveProcess]:
    """A worker started like the Procfile's; stopped (SIGTERM, then SIGKILL) by PID."""
    name = name or f"w-{uuid.uuid4().hex[:8]}@localhost"
    live = start_process(name.split("@")[0], worker_argv(name, concurrency, queues), env)
    live.name = name
    try:
        wait_until(
            lambda: live.process.poll() is not None or worker_answers(name),
            60,
            f"worker {name} to answer ping",
        )
        if live.process.poll() is not None:
            raise RuntimeError(f"worker exited early:\n{live.log()}")
        yield live
    finally:
        stop_process(live, grace_s=30)


@contextlib.contextmanager
def celery_beat(env: dict[str, str], schedule_dir: Path) -> Iterator[LiveProcess]:
    argv = [
        sys.executable, "-m", "celery", "-A", "agentsite", "beat", "--loglevel", "INFO",
        "--schedule", str(schedule_dir / "celerybeat-schedule"),
    ]  # fmt: skip
    live = start_process("beat", argv, env)
    try:
        yield live
    finally:
        stop_process(live)


def wait_for_status(task_id: int, statuses: Iterable[TaskStatus], timeout_s: float = 60) -> Task:
    wanted = set(statuses)
    found = wait_until(
        lambda: Task.objects.filter(pk=task_id, status__in=wanted).first(),
        timeout_s,
        f"task {task_id} to reach {sorted(wanted)}",
    )
    assert isinstance(found, Task)
    return found


def wait_until_finished(task_ids: Iterable[int], timeout_s: float = 120) -> list[Task]:
    ids = list(task_ids)
    terminal = TaskStatus.terminal()
    wait_until(
        lambda: Task.objects.filter(pk__in=ids, status__in=terminal).count() == len(ids),
        timeout_s,
        f"{len(ids)} tasks to finish",
    )
    return list(Task.objects.filter(pk__in=ids).order_by("pk"))
