"""CLI line written → WebSocket client received, for 1 and for N concurrent streams.

Each stream is one task whose fake CLI prints its init line, waits until every client
has connected and replayed it, then prints paced text deltas carrying `time.time()`.
Each task has one client on /ws/tasks/<id>/. Measured per delta: the time the CLI wrote
into it to the time the client coroutine got it (through pipe, CliRun, the database,
the channel layer and the consumer). Baseline: Redis PUBLISH → SUBSCRIBE of the same
number of messages per channel at the same pace (the floor of any cross-process push).
A short stream runs first as warm-up. The N streams then run again, side by side, on the
threads pool with a worker per core (docs/deploy.md's layout for many slots) and, with
the default threads pool, on prefork. Worker CPU per line is read from /proc
mid-stream, where only lines are handled (see efficiency_figures).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import db, fake_cli
from bench.context import Context
from bench.httpclient import post_tasks
from bench.procstat import CpuMeter
from bench.report import BenchResult, Figure
from bench.stack import Services, one_connection_per_slot, worker_pool, worker_processes
from bench.stats import Summary, summarize_ms
from bench.ws import Watch, redis_round_trips, run_loop, watch_tasks

NAME = "streaming"
NEEDS_STACK = True
GOAL_P50_MS = 20.0
GOAL_P99_MS = 100.0
GOAL_MULTI_P50_MS, GOAL_MULTI_P99_MS = 20.0, 150.0
GOAL_CPU_PER_LINE_MS = 0.3
GOAL_ROWS_PER_1000 = 50.0
START_TIMEOUT_S = 120.0
# Web's pool (DATABASE_POOL_MAX_SIZE, 20), the worker's main process, the bench itself.
WEB_AND_BENCH_CONNECTIONS = 25
THREADS_LAYOUT = "threads pool, a worker per core"
PREFORK_LAYOUT = "prefork pool"


# The mid-stream window ends when every stream has this share of its lines: before
# any stream's last line, so no task's end (or start: they are held at their init line)
# falls in it.
MIDWAY_SHARE = 0.75
# Before the release the CLIs wait, silent, as an agent waits on the model: what the
# worker spends then is what a running attempt costs while nothing happens.
SILENT_SETTLE_S = 1.0
SILENT_WINDOW_S = 3.0


@dataclass
class StreamRun:
    watches: list[Watch]
    tasks: list[Any]
    cpu: dict[str, float]  # CPU seconds of web, worker, bench client from release to end
    # The same from release until every stream had MIDWAY_SHARE of its lines, and the
    # deltas the clients had received by then.
    cpu_midway: dict[str, float] = field(default_factory=dict)
    deltas_midway: int = 0
    # CPU seconds over SILENT_WINDOW_S while every CLI was running and silent.
    cpu_silent: dict[str, float] = field(default_factory=dict)


def stream_tasks(
    ctx: Context,
    services: Services,
    *,
    tasks: int,
    clients_per_task: int,
    lines: int,
    interval_ms: float,
    go_file: Path | None = None,
    measure_silence: bool = False,
) -> StreamRun:
    """Start `tasks` paced fake CLIs held at their init line, follow each with
    `clients_per_task` sockets, release them, read to the end. `go_file` releases them:
    pass one to release other CLIs held on it at the same moment. `measure_silence`:
    first measure the worker's CPU while the CLIs wait."""
    go_file = go_file or ctx.scratch / f"go-{uuid.uuid4().hex}"
    prompt = fake_cli.prompt(lines=lines, interval_ms=interval_ms, go_file=str(go_file))
    try:
        ids = asyncio.run(post_tasks(services.endpoint, ctx.token, [prompt] * tasks, min(tasks, 8)))
        db.wait_cli_running(ids, START_TIMEOUT_S)
        cpu_silent = silent_cpu(services) if measure_silence else {}
        followed = [task_id for task_id in ids for _ in range(clients_per_task)]
        timeout_s = lines * interval_ms / 1000 + 60
        meter = CpuMeter(services.web.pid, services.worker_pids)
        midway: dict[str, Any] = {}

        def at_midway(deltas: int) -> None:
            midway.update(cpu=meter.lap(), deltas=deltas)

        watches = run_loop(
            watch_tasks(
                services.web_url,
                ctx.token,
                followed,
                go_file,
                timeout_s,
                meter.start,
                (int(lines * MIDWAY_SHARE), at_midway),
            )
        )
        cpu = meter.stop()
    finally:
        go_file.touch()  # on failure too: no CLI is left waiting
    tasks_done = db.finished_tasks(ids, 60)
    return StreamRun(
        watches, tasks_done, cpu, midway.get("cpu", {}), midway.get("deltas", 0), cpu_silent
    )


def silent_cpu(services: Services) -> dict[str, float]:
    meter = CpuMeter(services.web.pid, services.worker_pids)
    time.sleep(SILENT_SETTLE_S)
    meter.start()
    time.sleep(SILENT_WINDOW_S)
    return meter.stop()


def incomplete(watches: list[Watch], tasks: list[Any]) -> int:
    last = {task.pk: task.last_seq for task in tasks}
    return sum(not w.complete(last[w.task_id]) for w in watches)


def latencies(watches: list[Watch]) -> list[float]:
    return [latency for w in watches for latency in w.latencies]


def p99_by_fifth(watches: list[Watch], lines: int) -> list[float]:
    """p99 (ms) of the deltas in each fifth of the streams, first to last: whether the
    slow ones are where every stream starts, runs or ends at once."""
    fifths: list[list[float]] = [[] for _ in range(5)]
    for watch in watches:
        for index, latency in watch.by_index.items():
            fifths[min(4, index * 5 // lines)].append(latency)
    return [round(summarize_ms(fifth).p99, 1) for fifth in fifths]


def last_line_split(watches: list[Watch], lines: int) -> tuple[Summary, Summary]:
    """Latencies of each stream's last line, and of all its other lines. The streams
    end together, so each one's last line is read while the others' ends (their CLIs'
    exits, sandbox teardowns, commits and final transactions) take both cores."""
    last = [w.by_index[lines - 1] for w in watches if lines - 1 in w.by_index]
    others = [latency for w in watches for i, latency in w.by_index.items() if i < lines - 1]
    return summarize_ms(last), summarize_ms(others)


def ending_figures(label: str, last: Summary, others: Summary) -> list[Figure]:
    """Where the p99 goes: each stream's last line beside its other lines (no goals)."""
    return [
        Figure(
            f"{label}: each stream's last line (beside the others' ends), p50", last.p50, None, "ms"
        ),
        Figure(f"{label}: every line but each stream's last, p99", others.p99, None, "ms"),
    ]


def efficiency_figures(label: str, streamed: StreamRun, deltas: int, rows: int) -> list[Figure]:
    """Worker CPU (main and pool processes, from /proc) per streamed line, and the rows
    the text deltas became (`rows`).

    The goal is for a line: measured mid-stream (from the release until every stream
    has MIDWAY_SHARE of its lines), where only lines are handled. Over the whole run the
    same CPU also holds each task's end (its CLI's exit, the sandbox's teardown, keeping
    the work, the final transition), which `throughput` measures per task; that figure
    is shown beside it, without a goal.
    """
    whole_ms = streamed.cpu["worker_cpu_s"] * 1000 / deltas
    if not streamed.deltas_midway:
        raise RuntimeError("the streams never reached their mid-stream mark")
    line_ms = streamed.cpu_midway["worker_cpu_s"] * 1000 / streamed.deltas_midway
    rows_per_1000 = rows * 1000 / deltas
    attempts = len(streamed.tasks)
    silent = streamed.cpu_silent
    silent_ms = silent["worker_cpu_s"] * 1000 / silent["wall_s"] / attempts
    return [
        Figure(
            f"{label}: worker CPU per streamed line, mid-stream",
            line_ms,
            None,
            "ms",
            goal=f"≤ {GOAL_CPU_PER_LINE_MS:g} ms",
            met=line_ms <= GOAL_CPU_PER_LINE_MS,
        ),
        Figure(
            f"{label}: worker CPU per streamed line, whole tasks (with their ends)",
            whole_ms,
            None,
            "ms",
        ),
        Figure(
            f"{label}: worker CPU per silent running attempt (CLI waiting), per second",
            silent_ms,
            None,
            "ms",
        ),
        Figure(
            f"{label}: rows stored per 1,000 text deltas",
            rows_per_1000,
            None,
            "",
            goal=f"≤ {GOAL_ROWS_PER_1000:g}",
            met=rows_per_1000 <= GOAL_ROWS_PER_1000,
        ),
    ]


def _figures(label: str, value: Summary, base: Summary, goals: tuple[float, float]) -> list[Figure]:
    p50_goal, p99_goal = goals
    return [
        Figure(
            f"{label}, p50",
            value.p50,
            base.p50,
            "ms",
            goal=f"p50 < {p50_goal:g} ms",
            met=value.p50 < p50_goal,
        ),
        Figure(
            f"{label}, p99",
            value.p99,
            base.p99,
            "ms",
            goal=f"p99 < {p99_goal:g} ms",
            met=value.p99 < p99_goal,
        ),
    ]


@dataclass(frozen=True)
class Plan:
    streams: int
    lines: int
    interval_ms: float


WARM_UP = {"tasks": 1, "clients_per_task": 1, "lines": 10, "interval_ms": 20.0}


def measure_plan(
    ctx: Context, services: Services, plan: Plan, layout: str = ""
) -> tuple[list[Figure], dict[str, Any]]:
    """Figures and raw numbers of `plan`'s streams on `services` (`layout` names a
    worker layout other than the default one)."""
    streams, lines, interval_ms = plan.streams, plan.lines, plan.interval_ms
    streamed = stream_tasks(
        ctx,
        services,
        tasks=streams,
        clients_per_task=1,
        lines=lines,
        interval_ms=interval_ms,
        measure_silence=streams > 1,
    )
    watches, tasks = streamed.watches, streamed.tasks
    baseline = run_loop(redis_round_trips(os.environ["REDIS_URL"], streams, lines, interval_ms))
    value, base = summarize_ms(latencies(watches)), summarize_ms(baseline)
    last, others = last_line_split(watches, lines)
    expected = streams * lines
    if value.count != expected or incomplete(watches, tasks):
        raise RuntimeError(
            f"{streams} streams: {value.count}/{expected} deltas received, "
            f"{incomplete(watches, tasks)} incomplete streams"
        )
    noun = "stream" if streams == 1 else "streams"
    on = f", {layout}" if layout else ""
    label = f"CLI line → WS client, {streams} {noun} ({1000 / interval_ms:g} lines/s each){on}"
    goals = (GOAL_P50_MS, GOAL_P99_MS) if streams == 1 else (GOAL_MULTI_P50_MS, GOAL_MULTI_P99_MS)
    figures = _figures(label, value, base, goals)
    rows = db.text_delta_rows([task.pk for task in tasks])
    if streams > 1:
        figures += ending_figures(f"{streams} streams{on}", last, others)
        figures += efficiency_figures(f"{streams} streams{on}", streamed, expected, rows)
    raw = {
        "lines_per_stream": lines,
        "interval_ms": interval_ms,
        "latency_ms": value,
        "p99_ms_by_fifth_of_the_stream": p99_by_fifth(watches, lines),
        "last_line_ms": last,
        "other_lines_ms": others,
        "redis_pubsub_ms": base,
        "cpu_during_stream": streamed.cpu,
        "cpu_mid_stream": streamed.cpu_midway,
        "cpu_silent_attempts": streamed.cpu_silent,
        "deltas_mid_stream": streamed.deltas_midway,
        "text_delta_rows": rows,
    }
    return figures, raw


def other_layouts(streams: int) -> list[tuple[str, str, dict[str, str], int]]:
    """(name, key, worker settings, worker processes) of the layouts measured beside the
    default one (a worker of the default pool): the threads pool with a worker per core,
    docs/deploy.md's layout for many slots, and the other pool."""
    cores = os.cpu_count() or 1
    layouts = []
    default_is_per_core = worker_pool() == "threads" and worker_processes() == cores
    if cores > 1 and streams % cores == 0 and not default_is_per_core:
        layouts.append((THREADS_LAYOUT, "threads", {"AGENT_WORKER_POOL": "threads"}, cores))
    if worker_pool() == "threads":
        prefork = {"AGENT_WORKER_POOL": "prefork", "DATABASE_POOL_MAX_SIZE": "1"}
        layouts.append((PREFORK_LAYOUT, "prefork", prefork, 1))
    return layouts


def run(ctx: Context) -> BenchResult:
    sizes = ctx.sizes
    single = Plan(1, sizes.stream_lines_single, sizes.stream_interval_single_ms)
    multi = Plan(sizes.streams_multi, sizes.stream_lines_multi, sizes.stream_interval_multi_ms)
    figures: list[Figure] = []
    raw: dict[str, Any] = {}
    concurrency = max(4, multi.streams)
    # Fail clearly, not by timing out, when PostgreSQL cannot take one connection per
    # pool process (see one_connection_per_slot).
    db.require_free_connections(concurrency + WEB_AND_BENCH_CONNECTIONS)
    with ctx.services("bench-stream", concurrency, one_connection_per_slot()) as services:
        stream_tasks(ctx, services, **WARM_UP)
        for plan in (single, multi):
            plan_figures, raw[f"streams_{plan.streams}"] = measure_plan(ctx, services, plan)
            figures += plan_figures
    for layout, key, env, processes in other_layouts(multi.streams):
        with ctx.services(
            f"bench-stream-{key}", multi.streams, env, worker_processes=processes
        ) as services:
            stream_tasks(ctx, services, **WARM_UP)
            plan_figures, raw[f"streams_{multi.streams}_{key}"] = measure_plan(
                ctx, services, multi, layout
            )
            figures += plan_figures
    return BenchResult(NAME, figures, raw)
