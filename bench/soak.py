"""`make soak` (`python -m bench.soak`): half an hour of steady load with faults.

The bench's stack (its own database and Redis DB, production settings, the fake CLI)
with the Procfile's web, beat and two workers. 2,000 tasks are posted evenly through
the API, a share of them cancelled at a random moment; every five minutes one worker's
main process is SIGKILLed (its pool, and the CLIs under it, must die with it) and a new
worker takes its place, as a process supervisor would start one; 100 WebSocket clients
keep visiting recent tasks and reconnecting with `?after=`. At the end (after a drain)
it counts, from the database and /proc: lost tasks, double finishes, seq gaps, orphan
CLIs; it samples memory every 10 s and p99 latencies per minute; and writes
bench/soak.json and bench/soak.png. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import fake_cli, procstat
from bench.httpclient import Endpoint, api_headers, build_request, exchange_blocking, post_task
from bench.soak_clients import Clients
from bench.stack import Stack, StackConfig, environment, install_fake_cli, pick_port, reset_run_dir
from bench.stats import percentile

OUTPUT_DIR = Path(__file__).resolve().parent
SAMPLE_EVERY_S = 10.0
ORPHAN_GRACE_S = 10.0
RECENT_TASKS = 30
FAST_RECOVERY = {
    # A killed worker's tasks are found by their missing heartbeats: seconds, not a minute.
    "AGENT_HEARTBEAT_S": "1",
    "AGENT_STALE_AFTER_S": "10",
    "AGENT_REAPER_INTERVAL_S": "2",
    "AGENT_REDISPATCH_AFTER_S": "5",
    "AGENT_RETRY_BACKOFF_S": "1",
    "AGENT_RETRY_BACKOFF_MAX_S": "5",
}


@dataclass(frozen=True)
class Plan:
    minutes: float = 30.0
    tasks: int = 2000
    workers: int = 2
    concurrency: int = 4
    kill_every_s: float = 300.0
    ws_clients: int = 100
    cancel_share: float = 0.05
    lines: tuple[int, int] = (10, 80)
    line_interval_ms: float = 50.0
    drain_s: float = 180.0  # the last minutes: no new tasks, the queue empties

    @property
    def submit_s(self) -> float:
        return self.minutes * 60 - self.drain_s


def parse_args(argv: Sequence[str] | None) -> Plan:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=Plan.minutes)
    parser.add_argument("--tasks", type=int, default=Plan.tasks)
    parser.add_argument("--kill-every", type=float, default=Plan.kill_every_s, help="seconds")
    parser.add_argument("--ws-clients", type=int, default=Plan.ws_clients)
    parser.add_argument("--drain", type=float, default=Plan.drain_s, help="seconds")
    args = parser.parse_args(argv)
    if args.minutes * 60 <= args.drain:
        parser.error("--minutes must leave time before the drain")
    return Plan(
        minutes=args.minutes,
        tasks=args.tasks,
        kill_every_s=args.kill_every,
        ws_clients=args.ws_clients,
        drain_s=args.drain,
    )


def fake_cli_pids() -> set[int]:
    """Every fake CLI running on this machine (the soak's are the only ones)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"fake-claude" in cmdline and b"--version" not in cmdline and state != "Z":
            found.add(int(entry.name))
    return found


def alive(pids: set[int]) -> set[int]:
    return pids & fake_cli_pids()


@dataclass
class Fleet:
    """The workers; one is killed and replaced at a time."""

    stack: Stack
    env: dict[str, str]
    concurrency: int
    running: list[Any] = field(default_factory=list)  # tests.live.LiveProcess
    started: int = 0

    def start_one(self) -> None:
        from tests.live import procfile_argv, start_process

        self.started += 1
        env = {**self.env, "AGENT_MAX_CONCURRENCY": str(self.concurrency)}
        node = f"soak-{self.started}@localhost"
        argv = [*procfile_argv("worker", env), "-n", node]
        self.running.append(start_process(node, argv, env, log_dir=self.stack.config.logs))

    def kill_oldest(self) -> dict[str, Any]:
        """SIGKILL the oldest worker's main process alone; its CLIs must not outlive it."""
        from tests.live import stop_process

        victim = self.running.pop(0)
        clis = {victim.pid, *procstat.descendants(victim.pid)} & fake_cli_pids()
        os.kill(victim.pid, signal.SIGKILL)
        time.sleep(ORPHAN_GRACE_S)
        orphans = alive(clis)
        stop_process(victim, grace_s=1)  # reaps it (and SIGKILLs whatever is left)
        self.start_one()
        return {"worker": victim.name, "running_clis": len(clis), "orphans": len(orphans)}

    def main_pids(self) -> list[int]:
        return [live.pid for live in self.running]

    def stop(self) -> None:
        from tests.live import stop_process

        for live in self.running:
            stop_process(live, grace_s=30)
        self.running.clear()


@dataclass
class Load:
    """What the submitter and the canceller did, for the report."""

    submitted: list[int] = field(default_factory=list)
    posts: list[tuple[float, float]] = field(default_factory=list)  # (sent at, seconds)
    post_errors: list[str] = field(default_factory=list)
    cancels: dict[int, int] = field(default_factory=dict)  # id → HTTP status
    lock: threading.Lock = field(default_factory=threading.Lock)

    def recent(self) -> list[int]:
        with self.lock:
            return self.submitted[-RECENT_TASKS:]


def submit(plan: Plan, endpoint: Endpoint, token: str, load: Load, stop: threading.Event) -> None:
    """Tasks evenly over the submission window; a share of them cancelled soon after."""
    begin = time.monotonic()
    due_cancels: list[tuple[float, int]] = []
    for index in range(plan.tasks):
        due = begin + index * plan.submit_s / plan.tasks
        while not stop.is_set() and time.monotonic() < due:
            cancel_due(endpoint, token, due_cancels, load)
            time.sleep(min(0.05, max(0.0, due - time.monotonic())))
        if stop.is_set():
            return
        lines = random.randint(*plan.lines)
        prompt = fake_cli.prompt(lines=lines, interval_ms=plan.line_interval_ms)
        sent = time.time()
        try:
            task_id = post_task(endpoint, token, prompt)
        except (RuntimeError, OSError) as exc:
            load.post_errors.append(str(exc))
            continue
        with load.lock:
            load.posts.append((sent, time.time() - sent))
            load.submitted.append(task_id)
        if random.random() < plan.cancel_share:
            heapq.heappush(due_cancels, (time.monotonic() + random.uniform(0, 3), task_id))
    while due_cancels and not stop.is_set():
        cancel_due(endpoint, token, due_cancels, load)
        time.sleep(0.05)


def cancel_due(endpoint: Endpoint, token: str, due: list[tuple[float, int]], load: Load) -> None:
    while due and due[0][0] <= time.monotonic():
        _, task_id = heapq.heappop(due)
        path = f"/api/tasks/{task_id}/cancel/"
        request = build_request("POST", path, endpoint, api_headers(token), b"")
        load.cancels[task_id] = exchange_blocking(endpoint, request).status


@dataclass
class MemorySampler:
    web_pid: int
    fleet: Fleet
    begin: float
    samples: list[dict[str, float]] = field(default_factory=list)

    def sample(self) -> None:
        web = procstat.memory([self.web_pid, *procstat.descendants(self.web_pid)])["rss_mib"]
        # A worker is its main process and its pool; the CLIs and sandboxes are not it.
        pool = [p for main in self.fleet.main_pids() for p in procstat.worker_processes(main)]
        workers = procstat.memory(pool)["rss_mib"]
        at_min = (time.time() - self.begin) / 60
        self.samples.append(
            {"at_min": at_min, "web_mib": web, "workers_mib": workers, "clis": len(fake_cli_pids())}
        )


def p99_or_none(values: list[float]) -> float | None:
    return percentile(values, 99) * 1000 if values else None


def by_minute(
    begin: float, minutes: int, series: dict[str, list[tuple[float, float]]]
) -> list[dict[str, Any]]:
    """p99 (ms) of each series per minute since `begin`; (at, seconds) pairs."""
    windows = []
    for minute in range(minutes):
        low, high = begin + minute * 60, begin + (minute + 1) * 60
        window: dict[str, Any] = {"minute": minute}
        for name, points in series.items():
            window[name] = p99_or_none([value for at, value in points if low <= at < high])
        windows.append(window)
    return windows


def verify(ids: list[int]) -> dict[str, Any]:
    """What the database says about every submitted task, after the drain."""
    from django.db.models import Count, F

    from tasks_app.models import Task, TaskEvent, TaskStatus

    terminal = [status.value for status in TaskStatus.terminal()]
    tasks = Task.objects.filter(pk__in=ids)
    endings = TaskEvent.objects.filter(task_id__in=ids, kind="status", payload__status__in=terminal)
    results = TaskEvent.objects.filter(task_id__in=ids, kind="result")
    twice = Count("id")
    return {
        "missing": len(ids) - tasks.count(),
        "unfinished": tasks.exclude(status__in=terminal).count(),
        "double_finishes": endings.values("task_id").annotate(n=twice).filter(n__gt=1).count(),
        # An attempt handed back after its result (its work could not be kept, say) and
        # run again has a result of its own: one per attempt, one ending per task.
        "double_results": results.values("task_id", "attempt")
        .annotate(n=twice)
        .filter(n__gt=1)
        .count(),
        "seq_gaps": tasks.annotate(n=Count("events")).exclude(n=F("last_seq")).count(),
        "retried": tasks.filter(attempts__gt=1).count(),
        "by_status": dict(tasks.values_list("status").annotate(n=Count("id"))),
    }


def queue_waits(ids: list[int]) -> list[tuple[float, float]]:
    from tasks_app.models import Task

    rows = Task.objects.filter(pk__in=ids, started_at__isnull=False)
    return [
        (t.created.timestamp(), (t.started_at - t.created).total_seconds())
        for t in rows.only("created", "started_at")
    ]


@contextlib.contextmanager
def soak_stack(config: StackConfig) -> Iterator[tuple[Stack, dict[str, str]]]:
    github_port = pick_port()
    env = {**environment(config, github_port), **FAST_RECOVERY}
    reset_run_dir(config)
    os.environ.update(env)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(config.run_dir / "prometheus-bench")
    import django

    django.setup()
    install_fake_cli(config.fake_cli)
    with Stack(config, env, github_port) as stack:
        yield stack, env


def run(plan: Plan) -> dict[str, Any]:
    from bench import db
    from tests.live import http_ok, procfile_argv, wait_until

    config = StackConfig.from_environ()
    with soak_stack(config) as (stack, env), contextlib.ExitStack() as running:
        token = db.create_user_token("soak")
        port = pick_port()
        web_argv = procfile_argv("web", {**env, "BIND_HOST": "127.0.0.1", "PORT": str(port)})
        web = running.enter_context(stack.process("soak-web", web_argv))
        beat_argv = [
            *(sys.executable, "-m", "celery", "-A", "agentsite", "beat", "--loglevel", "INFO"),
            *("--schedule", str(config.run_dir / "soak-beat-schedule")),
        ]
        running.enter_context(stack.process("soak-beat", beat_argv))
        fleet = Fleet(stack, env, plan.concurrency)
        running.callback(fleet.stop)
        for _ in range(plan.workers):
            fleet.start_one()
        web_url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(web_url + "/readyz"), 120, "the soak stack to be ready")
        load, stop = Load(), threading.Event()
        clients = Clients(web_url, token, load.recent, plan.ws_clients)
        begin = time.time()
        memory = MemorySampler(web.pid, fleet, begin)
        submitter = threading.Thread(
            target=submit, args=(plan, Endpoint.from_url(web_url), token, load, stop)
        )
        running.callback(stop.set)
        clients.start()
        running.callback(clients.stop)
        submitter.start()
        kills: list[dict[str, Any]] = []
        next_kill = begin + plan.kill_every_s
        next_sample = begin
        deadline = begin + plan.minutes * 60
        while time.time() < deadline:
            now = time.time()
            if now >= next_sample:
                memory.sample()
                next_sample += SAMPLE_EVERY_S
            if now >= next_kill and now < begin + plan.submit_s:
                at_min = (now - begin) / 60
                kills.append({"at_min": at_min, **fleet.kill_oldest()})
                print(f"[soak] {at_min:.1f} min: killed {kills[-1]}", file=sys.stderr)
                next_kill += plan.kill_every_s
            if not submitter.is_alive() and db_drained(load.submitted):
                break
            time.sleep(0.5)
        stop.set()
        submitter.join()
        clients.stop()
        drained_at_min = (time.time() - begin) / 60
        checked = verify(load.submitted)
        waits = queue_waits(load.submitted)
    # Everything the soak started is stopped: whatever fake CLI remains is an orphan.
    orphans_end = len(fake_cli_pids())
    stats = clients.stats
    totals = {
        "submitted": len(load.submitted),
        "post_errors": len(load.post_errors),
        "lost": checked["missing"] + checked["unfinished"],
        "double_finishes": checked["double_finishes"] + checked["double_results"],
        "orphans": orphans_end + sum(kill["orphans"] for kill in kills),
        "orphans_after_kills": sum(kill["orphans"] for kill in kills),
        "orphans_at_end": orphans_end,
        "stored_seq_gaps": checked["seq_gaps"],
        "ws_visits": stats.visits,
        "ws_events": stats.events,
        "ws_gaps": stats.gaps,
        "ws_duplicates": stats.duplicates,
        "ws_errors": len(stats.errors),
        "cancel_requests": len(load.cancels),
        "retried": checked["retried"],
        "by_status": checked["by_status"],
        "drained_at_min": drained_at_min,
    }
    series = {"post_ms": load.posts, "wait_ms": waits, "ws_lag_ms": stats.lags}
    return {
        "plan": asdict(plan),
        "totals": totals,
        "kills": kills,
        "memory": memory.samples,
        "p99_by_minute": by_minute(begin, int(plan.minutes + 0.999), series),
        "errors": {"post": load.post_errors[:20], "ws": stats.errors[:20]},
    }


def db_drained(ids: list[int]) -> bool:
    from tasks_app.models import Task, TaskStatus

    return not Task.objects.filter(pk__in=ids).exclude(status__in=TaskStatus.terminal()).exists()


def render(report: dict[str, Any]) -> str:
    totals = report["totals"]
    memory = report["memory"]
    rows = [
        ("tasks submitted", totals["submitted"], f"{report['plan']['tasks']}"),
        ("lost tasks", totals["lost"], "0"),
        ("double finishes", totals["double_finishes"], "0"),
        ("orphan processes (after kills + at end)", totals["orphans"], "0"),
        ("seq gaps (stored / seen by WebSocket clients)",
         f"{totals['stored_seq_gaps']} / {totals['ws_gaps']}", "0 / 0"),
        ("WebSocket visits, events, errors",
         f"{totals['ws_visits']}, {totals['ws_events']}, {totals['ws_errors']}", "-"),
        ("worker kills", len(report["kills"]), "-"),
        ("web RSS first → last, MiB",
         f"{memory[0]['web_mib']:.0f} → {memory[-1]['web_mib']:.0f}" if memory else "-", "-"),
        ("workers RSS first → last, MiB",
         f"{memory[0]['workers_mib']:.0f} → {memory[-1]['workers_mib']:.0f}" if memory else "-",
         "-"),
        ("finished by status", json.dumps(totals["by_status"], sort_keys=True), "-"),
    ]  # fmt: skip
    lines = ["| figure | value | goal |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {goal} |" for name, value, goal in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from bench.soak_chart import draw

    plan = parse_args(argv)
    report = run(plan)
    (OUTPUT_DIR / "soak.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    draw(report, OUTPUT_DIR / "soak.png")
    print(render(report))
    print(f"[soak] wrote {OUTPUT_DIR / 'soak.json'} and {OUTPUT_DIR / 'soak.png'}")
    totals = report["totals"]
    failed = totals["lost"] or totals["double_finishes"] or totals["orphans"]
    return 1 if failed or totals["ws_gaps"] or totals["stored_seq_gaps"] else 0


if __name__ == "__main__":
    sys.exit(main())
