"""Plays a worker: starts a CliRun of sleeper.py and supervises it until it is killed."""

import sys
from pathlib import Path

sys.path.insert(0, sys.argv[1])  # the repository root, so cli_exec imports

from cli_exec.runner import CliCommand, CliRun, RunLimits  # noqa: E402

pid_file = sys.argv[2]
sleeper = str(Path(__file__).with_name("sleeper.py"))
command = CliCommand(argv=[sys.executable, sleeper, pid_file], cwd=Path("/"), env={})
with CliRun(command, RunLimits(wall_timeout_s=600, idle_timeout_s=600)) as run:
    run.start()
    for _batch in run.batches():
        pass
