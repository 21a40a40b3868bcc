"""Slots: what one more concurrent CLI costs a worker, prefork against the threads pool.

For each plan (pool, slots) a fresh worker of that many slots runs one warm-up task;
then its main process's RSS and PSS are read while it is idle. `slots` tasks start fake
CLIs that print their init line and wait; once every one runs they print paced text
deltas, and every task must succeed. Meanwhile the worker's own processes (its main
process and, with prefork, its pool; never the CLIs or their sandboxes) are read every
half second from the moment all run until all finished: "busy" is the highest sum.
With BENCH_WORKER_PROCESSES, the slots are spread over that many workers and their
processes summed. Value: (workers busy − main processes idle) / slots, PSS (shared
pages counted once; RSS is in the JSON). Baseline: prefork's figure at the same slot
count. Also measured while the deltas flow: the workers' CPU per streamed line.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bench import db, fake_cli, procstat
from bench.context import Context
from bench.httpclient import post_tasks
from bench.report import BenchResult, Figure
from bench.stack import Services, worker_processes

NAME = "slots"
NEEDS_STACK = True
GOAL_SLOT_MIB = 20.0
START_TIMEOUT_S = 300.0
POSTERS = 8
# A prefork pool process holds one connection (see stack.one_connection_per_slot); a
# threads pool's slots give theirs back between writes and share the process's pool.
PREFORK_ENV = {"AGENT_WORKER_POOL": "prefork", "DATABASE_POOL_MAX_SIZE": "1"}
THREADS_ENV = {"AGENT_WORKER_POOL": "threads"}
WEB_AND_BENCH_CONNECTIONS = 25


@dataclass(frozen=True)
class Plan:
    pool: str
    slots: int

    @property
    def label(self) -> str:
        processes = worker_processes()
        spread = f" over {processes} workers" if processes > 1 else ""
        return f"{self.pool}, {self.slots} slots{spread}"


@dataclass
class SlotRun:
    plan: Plan
    idle_main: dict[str, Any]
    busy: dict[str, Any]
    statuses: dict[str, int]
    lines: int
    interval_ms: float
    worker_cpu_s: float

    def per_slot(self, field: str) -> float:
        return (self.busy[field] - self.idle_main[field]) / self.plan.slots

    @property
    def all_succeeded(self) -> bool:
        return self.statuses.get("succeeded", 0) == self.plan.slots

    def to_json(self) -> dict[str, Any]:
        return {
            "pool": self.plan.pool,
            "slots": self.plan.slots,
            "idle_main": self.idle_main,
            "busy": self.busy,
            "per_slot_rss_mib": self.per_slot("rss_mib"),
            "per_slot_pss_mib": self.per_slot("pss_mib"),
            "statuses": self.statuses,
            "lines": self.lines,
            "interval_ms": self.interval_ms,
            "worker_cpu_s": self.worker_cpu_s,
        }


def plans(ctx: Context) -> list[Plan]:
    few, many = ctx.sizes.slots_compared, ctx.sizes.slots_many
    return [Plan("prefork", few), Plan("threads", few), Plan("threads", many)]


@contextmanager
def peak_memory(pids: list[int], every_s: float = 0.5) -> Iterator[dict[str, Any]]:
    """The worker's processes' memory, sampled until the block ends; yields the sample
    with the highest PSS (filled in as it goes)."""
    peak: dict[str, Any] = procstat.memory(procstat.workers_processes(pids))
    done = threading.Event()

    def sample() -> None:
        while not done.wait(every_s):
            now = procstat.memory(procstat.workers_processes(pids))
            if now["pss_mib"] > peak["pss_mib"]:
                peak.update(now)

    sampler = threading.Thread(target=sample, name="peak-memory")
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()


def run_plan(ctx: Context, services: Services, plan: Plan) -> SlotRun:
    sizes = ctx.sizes
    pids = services.worker_pids
    warm_up = fake_cli.prompt(lines=3)
    ids = asyncio.run(post_tasks(services.endpoint, ctx.token, [warm_up], 1))
    db.finished_tasks(ids, 120)
    idle_main = procstat.memory(pids)
    go_file = ctx.scratch / f"go-{uuid.uuid4().hex}"
    prompt = fake_cli.prompt(
        lines=sizes.slots_lines, interval_ms=sizes.slots_interval_ms, go_file=str(go_file)
    )
    try:
        ids = asyncio.run(post_tasks(services.endpoint, ctx.token, [prompt] * plan.slots, POSTERS))
        db.wait_cli_running(ids, START_TIMEOUT_S)
    finally:
        go_file.touch()  # on failure too: no CLI is left waiting
    cpu_before = procstat.cpu_seconds(procstat.workers_processes(pids))
    timeout_s = START_TIMEOUT_S + sizes.slots_lines * sizes.slots_interval_ms / 1000
    with peak_memory(pids) as busy:
        tasks = db.finished_tasks(ids, timeout_s)
    worker_cpu_s = procstat.cpu_seconds(procstat.workers_processes(pids)) - cpu_before
    return SlotRun(
        plan,
        idle_main,
        busy,
        db.status_counts(tasks),
        lines=plan.slots * sizes.slots_lines,
        interval_ms=sizes.slots_interval_ms,
        worker_cpu_s=worker_cpu_s,
    )


def figures(runs: list[SlotRun]) -> list[Figure]:
    prefork = {run.plan.slots: run for run in runs if run.plan.pool == "prefork"}
    rows: list[Figure] = []
    for run in runs:
        base = prefork.get(run.plan.slots)
        per_slot = run.per_slot("pss_mib")
        rows.append(
            Figure(
                f"worker memory per slot (PSS), {run.plan.label}",
                per_slot,
                base.per_slot("pss_mib") if base is not None and base is not run else None,
                "MiB",
                goal=f"≤ {GOAL_SLOT_MIB:g} MiB + the CLI",
                met=per_slot <= GOAL_SLOT_MIB,
            )
        )
        done = run.statuses.get("succeeded", 0)
        rows.append(
            Figure(
                f"sessions completed, {run.plan.label} ({1000 / run.interval_ms:g} lines/s each)",
                done,
                None,
                "",
                goal="all",
                met=run.all_succeeded,
                text=f"{done}/{run.plan.slots}",
            )
        )
        rows.append(
            Figure(
                f"worker CPU per streamed line, {run.plan.label}",
                run.worker_cpu_s * 1000 / run.lines,
                None,
                "ms",
            )
        )
    return rows


def run(ctx: Context) -> BenchResult:
    runs: list[SlotRun] = []
    for plan in plans(ctx):
        env = PREFORK_ENV if plan.pool == "prefork" else THREADS_ENV
        if plan.pool == "prefork":
            db.require_free_connections(plan.slots + WEB_AND_BENCH_CONNECTIONS)
        with ctx.services(f"bench-slots-{plan.pool}-{plan.slots}", plan.slots, env) as services:
            runs.append(run_plan(ctx, services, plan))
    raw = {"runs": [run.to_json() for run in runs], "lines_per_session": ctx.sizes.slots_lines}
    return BenchResult(NAME, figures(runs), raw)
