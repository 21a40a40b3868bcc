"""The process-table reader the concurrency and orphan tests count runs with: a child
that has not yet exec'd and the worker's own steps are not agent runs."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from tests.tasks_app.engine.processes import cli_groups_in


def _wait_for(path: Path) -> str:
    deadline = time.monotonic() + 10
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{path} was never written"
        time.sleep(0.01)
    return path.read_text()


def test_a_child_not_yet_executed_and_the_workers_own_steps_are_not_agent_runs(tmp_path):
    root = tmp_path / "workspaces"
    for name in ("forked", "agent", "worker"):
        (root / name).mkdir(parents=True)
    pid_file = tmp_path / "forked.pid"

    def hold_before_exec() -> None:
        # Runs in the child after it moved into its workspace, before it execs.
        pid_file.write_text(str(os.getpid()))
        time.sleep(60)

    forked: list[subprocess.Popen[bytes]] = []
    spawner = threading.Thread(
        target=lambda: forked.append(
            subprocess.Popen(["true"], cwd=root / "forked", preexec_fn=hold_before_exec)  # noqa: PLW1509, S607
        )
    )
    spawner.start()
    forked_pid = int(_wait_for(pid_file))
    agent = subprocess.Popen(["sleep", "60"], cwd=root / "agent", start_new_session=True)  # noqa: S607
    # The worker's own steps run in its own group, as its git does.
    worker_step = subprocess.Popen(  # noqa: S607
        ["sh", "-c", "read line"], cwd=root / "worker", stdin=subprocess.PIPE
    )
    try:
        everything = cli_groups_in(root)
        agents = cli_groups_in(root, agents_only=True)
    finally:
        os.kill(forked_pid, signal.SIGKILL)
        spawner.join(timeout=10)
        for process in (*forked, agent, worker_step):
            process.kill()
            process.wait(timeout=10)
    # The held child stands in its workspace but still runs this interpreter: no run yet.
    assert sorted(path.name for path in everything.values()) == ["agent", "worker"]
    assert [path.name for path in agents.values()] == ["agent"]
