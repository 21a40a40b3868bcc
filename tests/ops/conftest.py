"""Operations tests: the Procfile's own commands as real processes, stopped by PID.

`tests.live.procfile_argv` gives the exact flags production runs with. `running` starts
one with stdout and stderr in separate log files (JSON logs go to stderr; Celery's
banner and uvicorn's access lines to stdout).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.engine import sandbox_reachable_dir
from tests.live import ARTIFACTS, ROOT, LiveProcess, stop_process, wait_until


@dataclass
class LoggedProcess(LiveProcess):
    """A LiveProcess whose `log_path` holds stderr only; stdout has a file of its own."""

    stdout_path: Path = field(default_factory=Path)

    def log_files(self) -> list[Path]:
        return [self.stdout_path, self.log_path]

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")


def start_logged(name: str, argv: list[str], env: Mapping[str, str]) -> LoggedProcess:
    log_dir = ARTIFACTS / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{time.strftime('%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
    stderr_path, stdout_path = log_dir / f"{stem}.log", log_dir / f"{stem}.stdout.log"
    with stderr_path.open("wb") as stderr, stdout_path.open("wb") as stdout:
        process = subprocess.Popen(  # noqa: S603
            argv, cwd=ROOT, env=dict(env), stdout=stdout, stderr=stderr, start_new_session=True
        )
    return LoggedProcess(name, process, stderr_path, stdout_path)


@contextlib.contextmanager
def running(
    name: str,
    argv: list[str],
    env: Mapping[str, str],
    *,
    ready: Callable[[], object],
    timeout_s: float = 60,
    stop_grace_s: float = 15,
) -> Iterator[LoggedProcess]:
    """Start, wait until `ready()` (or an early exit, which fails), always stop by PID."""
    live = start_logged(name, argv, env)
    try:
        wait_until(
            lambda: live.process.poll() is not None or ready(), timeout_s, f"{name} to be ready"
        )
        if live.process.poll() is not None:
            raise RuntimeError(
                f"{name} exited early with {live.process.returncode}:\n"
                f"{live.stdout()}\n{live.log()}"
            )
        yield live
    finally:
        stop_process(live, grace_s=stop_grace_s)


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def module_workspace_root() -> Iterator[Path]:
    with sandbox_reachable_dir("workspaces") as root:
        yield root
