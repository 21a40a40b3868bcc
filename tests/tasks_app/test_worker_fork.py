"""What a prefork worker shares with its pool processes: set up before the fork."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tasks_app import worker
from tests.concurrency import in_forked_child

ROOT = Path(__file__).resolve().parents[2]

# In a process of its own: the worker's main process at start (Django set up, the job
# modules imported), then its set-up before forking the pool.
SCRIPT = """
import gc, json, os, sys
import django
django.setup()
import tasks_app.tasks  # what the worker imports to know its jobs
from django.conf import settings
from tasks_app import worker
backend = settings.CHANNEL_LAYERS["default"]["BACKEND"].rsplit(".", 1)[0]
names = [*worker.IMPORTED_BEFORE_FORK, backend, "tasks_app.api.serializers"]
before = {name: name in sys.modules for name in names}
worker.share_before_fork()
after = {name: name in sys.modules for name in names}
alive = len(gc.get_objects())
from tasks_app.api.serializers import _task_output
print(json.dumps({"before": before, "after": after, "frozen": gc.get_freeze_count(),
                  "tracked_after": alive, "snapshot_fields": "fields" in vars(_task_output())}))
"""


def test_the_pool_inherits_what_its_first_attempt_would_import_and_a_frozen_heap():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "agentsite.settings"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # Each is imported only on an attempt's path, so without the set-up every pool
    # process would import its own copy.
    assert not any(report["before"].values()), report["before"]
    assert all(report["after"].values()), report["after"]
    # The status pushes' shared serializer is built, so its fields are shared too.
    assert report["snapshot_fields"]
    # Everything alive at the fork is out of the collector's reach in the pool processes.
    assert report["frozen"] > 100_000 and report["tracked_after"] < report["frozen"] / 10


def test_the_set_up_runs_when_the_worker_starts():
    from celery.signals import worker_init

    receivers = [ref() for _, ref in worker_init.receivers]
    assert worker.share_before_fork in receivers
    # After the TLS roots, which it must freeze with everything else.
    assert receivers.index(worker.prepare_tls) < receivers.index(worker.share_before_fork)


def test_the_worker_hands_the_interpreter_over_sooner_and_its_pool_processes_too():
    from celery.signals import worker_init

    assert worker.switch_threads_sooner in [ref() for _, ref in worker_init.receivers]
    default = sys.getswitchinterval()
    try:
        worker.switch_threads_sooner()
        assert sys.getswitchinterval() == worker.GIL_SWITCH_INTERVAL_S < default
        # A pool process is forked from the main process the same way.
        inherited = in_forked_child(lambda: repr(sys.getswitchinterval()).encode())
        assert float(inherited) == worker.GIL_SWITCH_INTERVAL_S
    finally:
        sys.setswitchinterval(default)
