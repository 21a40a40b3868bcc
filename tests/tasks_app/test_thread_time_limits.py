"""The hard time limit of jobs run in the worker's own threads (threads pool)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from celery.exceptions import TimeLimitExceeded

from tasks_app import worker
from tasks_app.thread_time_limits import STUCK_JOB_EXIT_CODE, ThreadJobLimits
from tests.live import wait_until

REPO = Path(__file__).resolve().parents[2]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run_job(
    limits: ThreadJobLimits, job_id: str, body: threading.Event
) -> tuple[threading.Thread, list[str]]:
    """A job thread that works in Python (short sleeps) until `body` is set or it is
    interrupted, and the list where it says which."""
    outcome: list[str] = []

    def job() -> None:
        limits.job_started(job_id, "tasks_app.test_job", limit_s=0.2)
        try:
            while not body.is_set():
                time.sleep(0.01)
            outcome.append("finished")
        except TimeLimitExceeded:
            outcome.append("interrupted")
        finally:
            limits.job_ended(job_id)

    thread = threading.Thread(target=job)
    thread.start()
    return thread, outcome


def test_job_past_its_limit_is_interrupted_in_its_thread_and_forgotten() -> None:
    stuck: list[str] = []
    limits = ThreadJobLimits(grace_s=30, on_stuck=stuck.append)
    never = threading.Event()
    thread, outcome = run_job(limits, "job-1", never)
    try:
        thread.join(10)
        assert outcome == ["interrupted"]
        assert limits.watched() == []
        assert stuck == []
    finally:
        never.set()
        limits.stop()


def test_jobs_within_their_limit_run_to_the_end() -> None:
    stuck: list[str] = []
    clock = FakeClock()
    limits = ThreadJobLimits(grace_s=30, on_stuck=stuck.append, clock=clock)
    limits.job_started("early", "tasks_app.test_job", limit_s=10)
    clock.now += 9.9
    assert limits.check() is not None  # still watched, due in 0.1 s
    limits.job_ended("early")
    clock.now += 100
    assert limits.check() is None
    assert limits.watched() == [] and stuck == []
    limits.stop()


def test_job_that_unwound_is_never_reported_stuck() -> None:
    stuck: list[str] = []
    clock = FakeClock()
    limits = ThreadJobLimits(grace_s=30, on_stuck=stuck.append, clock=clock)
    never = threading.Event()
    thread, outcome = run_job(limits, "job-2", never)
    wait_until(lambda: limits.watched() == ["job-2"], 5, "the job to start")
    clock.now += 0.3
    limits.check()  # (or the watcher, which reads the same clock) interrupts it
    thread.join(10)
    assert outcome == ["interrupted"]
    assert limits.watched() == []
    clock.now += 100
    assert limits.check() is None
    assert stuck == []
    limits.stop()


def test_job_blocked_outside_python_ends_the_process(tmp_path: Path) -> None:
    # A read on a pipe nobody writes never returns to Python, where the exception would
    # be delivered: only ending the process frees the slot, as prefork's kill would.
    script = textwrap.dedent(
        """
        import os, threading
        from tasks_app.thread_time_limits import ThreadJobLimits

        limits = ThreadJobLimits(grace_s=0.3)
        reader, writer = os.pipe()

        def job():
            limits.job_started("blocked", "tasks_app.test_job", limit_s=0.2)
            os.read(reader, 1)

        threading.Thread(target=job).start()
        threading.Event().wait(30)
        print("survived")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == STUCK_JOB_EXIT_CODE
    assert "worker_ended_for_stuck_job" in done.stdout + done.stderr
    assert "job_time_limit_exceeded" in done.stdout + done.stderr
    assert "survived" not in done.stdout


def test_threads_worker_watches_its_jobs_and_prefork_leaves_it_to_celery(monkeypatch) -> None:
    monkeypatch.setattr(worker, "THREAD_JOB_LIMITS", [])
    worker.limit_jobs_in_threads(sender=SimpleNamespace(pool_cls="prefork"))
    assert worker.THREAD_JOB_LIMITS == []
    worker.limit_jobs_in_threads(sender=SimpleNamespace(pool_cls="threads"))
    assert len(worker.THREAD_JOB_LIMITS) == 1


def test_hard_time_limit_prefers_the_message_then_the_task_then_the_app() -> None:
    def job(message: float | None, task: float | None, app: float | None) -> SimpleNamespace:
        return SimpleNamespace(
            request=SimpleNamespace(timelimit=(message, None)),
            time_limit=task,
            app=SimpleNamespace(conf=SimpleNamespace(task_time_limit=app)),
        )

    assert worker.hard_time_limit(job(5, 50, 500)) == 5
    assert worker.hard_time_limit(job(None, 50, 500)) == 50
    assert worker.hard_time_limit(job(None, None, 500)) == 500
    assert worker.hard_time_limit(job(None, None, None)) is None
