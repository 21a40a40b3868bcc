"""Worker memory: summed RSS of the worker's main and pool processes as tasks go by.

Measured from /proc after warm-up tasks, then after the first and second checkpoint
(100 and 1,000 tasks by default), each time when the last batch has finished (no CLI
running). Also recorded: PSS (shared pages counted once) and a sample every 100 tasks.
Value: RSS after the second checkpoint; baseline: after the first; ratio: their quotient.
"""

from __future__ import annotations

from typing import Any

from bench import fake_cli, procstat
from bench.context import Context
from bench.report import BenchResult, Figure
from bench.throughput import run_tasks

NAME = "memory"
NEEDS_STACK = True
GOAL_GROWTH = 0.10
BATCH = 100


def worker_memory(pid: int) -> dict[str, Any]:
    """Summed over the worker's main process and its pool."""
    return procstat.memory(procstat.worker_processes(pid))


def run(ctx: Context) -> BenchResult:
    sizes = ctx.sizes
    prompt = fake_cli.prompt(lines=3)
    curve: list[dict[str, Any]] = []
    with ctx.services("bench-memory", concurrency=4) as services:
        pid = services.worker.pid
        run_tasks(ctx, services, [prompt] * sizes.rss_warmup, 300)
        after_warmup = worker_memory(pid)
        done = 0
        for checkpoint in sizes.rss_checkpoints:
            while done < checkpoint:
                batch = min(BATCH, checkpoint - done)
                run_tasks(ctx, services, [prompt] * batch, 300)
                done += batch
                curve.append({"tasks": done, **worker_memory(pid)})
    first, second = (next(c for c in curve if c["tasks"] == n) for n in sizes.rss_checkpoints)
    growth = second["rss_mib"] / first["rss_mib"] - 1
    figure = Figure(
        f"worker RSS after {sizes.rss_checkpoints[1]:,} tasks (base: after "
        f"{sizes.rss_checkpoints[0]:,})",
        second["rss_mib"],
        first["rss_mib"],
        "MiB",
        goal=f"growth < {GOAL_GROWTH:.0%}",
        met=growth < GOAL_GROWTH,
    )
    raw = {"after_warmup": after_warmup, "curve": curve, "rss_growth": growth}
    raw["pss_growth"] = second["pss_mib"] / first["pss_mib"] - 1
    return BenchResult(NAME, [figure], raw)
