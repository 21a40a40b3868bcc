"""API POST → CLI process started, with idle workers: one task at a time.

Measured: `time.time()` just before the POST /api/tasks/ request is built and sent, to
the `bench_started_at` the fake CLI puts in its first line (its first Python statement;
stored as the init event). The next POST waits until the task has finished.
Baseline: the same CLI, argv and prompt spawned directly with subprocess.Popen (new
session, pipes), from before Popen to the same `bench_started_at`; the interpreter's
start-up is in both, so value minus baseline is what the system adds.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench import db, fake_cli
from bench.context import Context
from bench.httpclient import post_task
from bench.report import BenchResult, Figure
from bench.runner import cli_argv
from bench.stack import Services
from bench.stats import summarize_ms

NAME = "start"
NEEDS_STACK = True
GOAL_P50_MS = 30.0
TASK_TIMEOUT_S = 60.0


def direct_start(cli: Path, prompt: bytes) -> float:
    """Seconds from before Popen to the CLI's first statement."""
    sent = time.time()
    proc = subprocess.Popen(
        cli_argv(cli),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    out, _ = proc.communicate(prompt, timeout=TASK_TIMEOUT_S)
    return float(json.loads(out.split(b"\n", 1)[0])["bench_started_at"]) - sent


@dataclass(frozen=True)
class StartTimes:
    total: list[float]  # POST sent → CLI's first statement
    answered: list[float]  # POST sent → 201 received
    claimed: list[float]  # POST sent → task claimed by the worker


def post_to_cli_start(ctx: Context, services: Services, prompt: str) -> StartTimes:
    """One task at a time on idle workers, after warm-up ones."""
    sizes = ctx.sizes
    times = StartTimes([], [], [])
    endpoint = services.endpoint
    for index in range(sizes.start_warmup + sizes.start_samples):
        sent = time.time()
        task_id = post_task(endpoint, ctx.token, prompt)
        answer_at = time.time()
        (task,) = db.finished_tasks([task_id], TASK_TIMEOUT_S, poll_s=0.01)
        if task.status != "succeeded":
            raise RuntimeError(f"task {task_id} ended {task.status}: {task.error}")
        if index < sizes.start_warmup:
            continue
        times.total.append(db.cli_start_times([task_id])[task_id] - sent)
        times.answered.append(answer_at - sent)
        times.claimed.append(task.started_at.timestamp() - sent)
    return times


def run(ctx: Context) -> BenchResult:
    sizes = ctx.sizes
    prompt = fake_cli.prompt(lines=1)
    with ctx.services("bench-start", concurrency=4) as services:
        times = post_to_cli_start(ctx, services, prompt)
    for _ in range(sizes.start_warmup):
        direct_start(ctx.fake_cli, prompt.encode())
    direct = [direct_start(ctx.fake_cli, prompt.encode()) for _ in range(sizes.start_samples)]
    value, base = summarize_ms(times.total), summarize_ms(direct)
    label = "API POST → CLI started (idle workers)"
    figures = [
        Figure(
            f"{label}, p50",
            value.p50,
            base.p50,
            "ms",
            goal=f"p50 < {GOAL_P50_MS:g} ms",
            met=value.p50 < GOAL_P50_MS,
        ),
        Figure(f"{label}, p95", value.p95, base.p95, "ms"),
    ]
    raw = {
        "post_to_cli_ms": value,
        "direct_spawn_ms": base,
        "post_to_answer_ms": summarize_ms(times.answered),
        "post_to_claimed_ms": summarize_ms(times.claimed),
    }
    return BenchResult(NAME, figures, raw)
