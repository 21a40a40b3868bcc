"""The hard time limit of jobs that run in threads of the worker's own process.

Celery enforces `task_time_limit` only in the prefork pool, by killing the pool process
that ran over; in the threads pool it is silently ignored, and a job that never returns
would hold its slot for as long as the worker lives. A thread cannot be killed, so at the
limit the watchdog raises TimeLimitExceeded in the job's thread: Python delivers it at the
thread's next instruction, and the job unwinds through its `finally` and `with` blocks
(its CLI stopped and reaped, its sandbox removed) and frees the slot. A job still there
`grace_s` later is blocked in a call that does not return to Python; then the watchdog
ends the process, as prefork ends the pool process, and every CLI of it dies with it (its
parent-death signal): the process manager starts the worker again and beat's reaper puts
the tasks whose heartbeats stopped back in the queue.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from celery.exceptions import TimeLimitExceeded

log = structlog.get_logger(__name__)

# A process that had to be ended for a stuck job exits with EX_SOFTWARE.
STUCK_JOB_EXIT_CODE = 70


def end_process(reason: str) -> None:
    log.critical("worker_ended_for_stuck_job", reason=reason)
    # No clean shutdown: it would wait for the stuck thread, for ever.
    os._exit(STUCK_JOB_EXIT_CODE)


def raise_in_thread(thread_id: int, exception: type[BaseException]) -> bool:
    """Schedule `exception` in the thread `thread_id`; False if no such thread runs."""
    changed = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exception)
    )
    return bool(changed)


def thread_stack(thread_id: int) -> str:
    frame = sys._current_frames().get(thread_id)
    return "".join(traceback.format_stack(frame)) if frame is not None else ""


@dataclass
class WatchedJob:
    job_id: str
    name: str
    thread_id: int
    deadline: float
    raised_at: float | None = None  # when TimeLimitExceeded was raised in its thread


class ThreadJobLimits:
    """Watches the jobs of this process's threads against their hard time limits."""

    def __init__(
        self,
        *,
        grace_s: float = 60.0,
        on_stuck: Callable[[str], None] = end_process,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.grace_s = grace_s
        self.on_stuck = on_stuck
        self.clock = clock
        self._jobs: dict[str, WatchedJob] = {}
        self._lock = threading.Lock()
        self._checking = threading.Lock()  # one check at a time: a job is raised in once
        self._changed = threading.Event()
        self._stopped = threading.Event()
        self._watcher: threading.Thread | None = None

    def job_started(self, job_id: str, name: str, limit_s: float) -> None:
        """Called in the job's own thread as it starts."""
        job = WatchedJob(job_id, name, threading.get_ident(), self.clock() + limit_s)
        with self._lock:
            self._jobs[job_id] = job
            if self._watcher is None:
                self._watcher = threading.Thread(
                    target=self._watch, name="job-time-limits", daemon=True
                )
                self._watcher.start()
        self._changed.set()

    def job_ended(self, job_id: str) -> None:
        """Called in the job's own thread as it ends."""
        while True:
            try:
                with self._lock:
                    self._jobs.pop(job_id, None)
                return
            except TimeLimitExceeded:
                # Raised as the job reached this point, after its work: it ended all the
                # same. It is raised once per job, so this loops at most once more.
                continue

    def watched(self) -> list[str]:
        with self._lock:
            return list(self._jobs)

    def stop(self) -> None:
        self._stopped.set()
        self._changed.set()
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join()

    def _watch(self) -> None:
        while not self._stopped.is_set():
            wait_s = self.check()
            self._changed.wait(wait_s)
            self._changed.clear()

    def check(self) -> float | None:
        """Act on every job past its limit; returns how long until the next one is due."""
        with self._checking:
            return self._check(self.clock())

    def _check(self, now: float) -> float | None:
        with self._lock:
            jobs = list(self._jobs.values())
        due: list[float] = []
        for job in jobs:
            if job.raised_at is None:
                if now < job.deadline:
                    due.append(job.deadline)
                    continue
                self._interrupt(job, now)
                raised_at = now
            else:
                raised_at = job.raised_at
            if job.job_id not in self._jobs:
                continue  # it unwound, or its thread was gone
            if now >= raised_at + self.grace_s:
                self.on_stuck(
                    f"job {job.name}[{job.job_id}] ran {self.grace_s:.0f} s past its hard time "
                    "limit in a call that did not return to Python"
                )
                return None
            due.append(raised_at + self.grace_s)
        return max(0.0, min(due) - now) if due else None

    def _interrupt(self, job: WatchedJob, now: float) -> None:
        job.raised_at = now
        log.error(
            "job_time_limit_exceeded",
            job=job.name,
            job_id=job.job_id,
            stack=thread_stack(job.thread_id),
        )
        with self._lock:
            # Under the lock, so a job that has just ended (job_ended waits for it) is
            # never interrupted afterwards, in whatever its thread runs next.
            if job.job_id not in self._jobs:
                return
            if not raise_in_thread(job.thread_id, TimeLimitExceeded):
                del self._jobs[job.job_id]  # its thread is gone: nothing holds the slot
