"""Throughput: N near-instant tasks at worker concurrency 4, against a plain pool of 4.

Measured: from `time.time()` before the first POST /api/tasks/ (4 clients posting at
once) to the latest `finished_at` among the N tasks; tasks/s = N / that. Baseline: a
ThreadPoolExecutor of 4 running the same fake CLI, argv and prompt through
subprocess.run (pipes captured), N times. Warm-up tasks and runs are excluded.
Ratio: our wall time over the pool's (1.0 = no overhead).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import db, fake_cli
from bench.context import Context
from bench.httpclient import post_tasks
from bench.procstat import CpuMeter
from bench.report import BenchResult, Figure
from bench.runner import children_cpu, cli_argv
from bench.stack import Services

NAME = "throughput"
NEEDS_STACK = True
# Wall time against the plain pool's (issue 14's goal; the first bench asked 1.2).
GOAL_RATIO = 2.0
GOAL_WORKER_CPU_MS = 10.0
POSTERS = 4


def plain_pool(
    cli: Path, prompt: bytes, count: int, workers: int, warmup: int
) -> tuple[float, float]:
    """(wall seconds, the CLIs' CPU seconds) for `workers` threads running it `count` times."""
    argv = cli_argv(cli)

    def one(_: int) -> None:
        subprocess.run(argv, input=prompt, capture_output=True, check=True)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(warmup)))
        cpu_before = children_cpu()
        started = time.perf_counter()
        list(pool.map(one, range(count)))
        wall = time.perf_counter() - started
    return wall, children_cpu() - cpu_before


def run_tasks(ctx: Context, services: Services, prompts: list[str], timeout_s: float) -> list:
    """POST every prompt (POSTERS at a time), wait for all to finish; all must succeed."""
    ids = asyncio.run(post_tasks(services.endpoint, ctx.token, prompts, POSTERS))
    tasks = db.finished_tasks(ids, timeout_s, poll_s=0.1)
    counts = db.status_counts(tasks)
    if counts.get("succeeded", 0) != len(ids):
        raise RuntimeError(f"not every task succeeded: {counts}")
    return tasks


def run(ctx: Context) -> BenchResult:
    sizes = ctx.sizes
    n, concurrency = sizes.throughput_tasks, sizes.throughput_concurrency
    prompt = fake_cli.prompt(lines=3)
    with ctx.services("bench-throughput", concurrency=concurrency) as services:
        run_tasks(ctx, services, [prompt] * sizes.throughput_warmup, 120)
        meter = CpuMeter(services.web.pid, services.worker_pids)
        meter.start()
        started = time.time()
        tasks = run_tasks(ctx, services, [prompt] * n, max(300.0, n * 0.5))
        cpu = meter.stop()
    wall = max(task.finished_at.timestamp() for task in tasks) - started
    pool_wall, cli_cpu = plain_pool(
        ctx.fake_cli, prompt.encode(), n, concurrency, warmup=sizes.throughput_warmup
    )
    rate, pool_rate = n / wall, n / pool_wall
    figure = Figure(
        f"{n} near-instant tasks at concurrency {concurrency}",
        rate,
        pool_rate,
        "tasks/s",
        goal=f"time ratio ≤ {GOAL_RATIO:g}",
        met=wall / pool_wall <= GOAL_RATIO,
        ratio=wall / pool_wall,
    )
    worker_cpu_ms = cpu["worker_cpu_s"] * 1000 / n
    cpu_figure = Figure(
        "worker CPU per near-instant task (main and pool processes)",
        worker_cpu_ms,
        None,
        "ms",
        goal=f"≤ {GOAL_WORKER_CPU_MS:g} ms",
        met=worker_cpu_ms <= GOAL_WORKER_CPU_MS,
    )
    raw = {
        "tasks": n,
        "wall_s": wall,
        "pool_wall_s": pool_wall,
        "tasks_per_s": rate,
        "pool_tasks_per_s": pool_rate,
        # CPU per task: what the machine spends besides the CLI itself (its own CPU is
        # in neither the worker's nor web's figure, and is `cli_cpu_ms_per_run`).
        "cpu_ms_per_task": {k: round(v * 1000 / n, 2) for k, v in cpu.items() if k != "wall_s"},
        "cli_cpu_ms_per_run": round(cli_cpu * 1000 / n, 2),
    }
    return BenchResult(NAME, [figure, cpu_figure], raw)
