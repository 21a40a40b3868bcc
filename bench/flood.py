"""A noisy neighbour: paced streams beside a CLI that floods or prints one huge line.

One worker with a slot per stream and one more. First the streams run alone (quiet);
then again with a fifth task on the same worker, released at the same moment: a fake
CLI printing 64 KiB text deltas at 10 MB/s (stopped by AGENT_MAX_OUTPUT_BYTES, 64 MiB,
after about 6 s), then one printing a single 16 MiB line (over the 16 MiB line limit by
its JSON). Value: the streams' line → client p99 beside the neighbour; baseline: the
quiet p99 of the same run; goal: ratio ≤ 2. The neighbour's ending is in the JSON.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from bench import db, fake_cli
from bench.context import Context
from bench.httpclient import post_tasks
from bench.report import BenchResult, Figure
from bench.stack import Services, one_connection_per_slot
from bench.stats import Summary, summarize_ms
from bench.streaming import START_TIMEOUT_S, incomplete, latencies, stream_tasks

NAME = "flood"
NEEDS_STACK = True
GOAL_RATIO = 2.0
FLOOD_MB_S = 10.0
BIG_LINE_MIB = 16.0


def streams_latency(ctx: Context, services: Services, *, go_file: Path | None = None) -> Summary:
    sizes = ctx.sizes
    streamed = stream_tasks(
        ctx,
        services,
        tasks=sizes.flood_streams,
        clients_per_task=1,
        lines=sizes.flood_lines,
        interval_ms=sizes.flood_interval_ms,
        go_file=go_file,
    )
    expected = sizes.flood_streams * sizes.flood_lines
    value = summarize_ms(latencies(streamed.watches))
    if value.count != expected or incomplete(streamed.watches, streamed.tasks):
        raise RuntimeError(f"{value.count}/{expected} deltas received beside the neighbour")
    return value


def beside(ctx: Context, services: Services, neighbour: dict[str, float]) -> tuple[Summary, Any]:
    """The streams' latency while the neighbour (fake_cli.prompt's arguments), released
    with them, runs; and how the neighbour's task ended."""
    go_file = ctx.scratch / f"go-{uuid.uuid4().hex}"
    prompt = fake_cli.prompt(**neighbour, go_file=str(go_file))
    [neighbour_id] = asyncio.run(post_tasks(services.endpoint, ctx.token, [prompt], 1))
    try:
        db.wait_cli_running([neighbour_id], START_TIMEOUT_S)
        value = streams_latency(ctx, services, go_file=go_file)
    finally:
        go_file.touch()
    [ended] = db.finished_tasks([neighbour_id], 120)
    return value, ended


def run(ctx: Context) -> BenchResult:
    sizes = ctx.sizes
    stream_s = sizes.flood_lines * sizes.flood_interval_ms / 1000
    neighbours = {
        f"a CLI flooding {FLOOD_MB_S:g} MB/s": {"flood_mb_s": FLOOD_MB_S, "flood_s": stream_s + 5},
        f"a CLI printing one {BIG_LINE_MIB:g} MiB line": {"big_line_mib": BIG_LINE_MIB},
    }
    figures: list[Figure] = []
    raw: dict[str, Any] = {"streams": sizes.flood_streams, "lines": sizes.flood_lines}
    slots = sizes.flood_streams + 1
    with ctx.services("bench-flood", slots, one_connection_per_slot()) as services:
        stream_tasks(ctx, services, tasks=1, clients_per_task=1, lines=10, interval_ms=20.0)
        quiet = streams_latency(ctx, services)
        raw["quiet_ms"] = quiet
        for label, neighbour in neighbours.items():
            value, ended = beside(ctx, services, neighbour)
            ratio = value.p99 / quiet.p99
            figures.append(
                Figure(
                    f"{sizes.flood_streams} streams beside {label}: line → client p99",
                    value.p99,
                    quiet.p99,
                    "ms",
                    goal=f"≤ {GOAL_RATIO:g}x quiet",
                    met=ratio <= GOAL_RATIO,
                )
            )
            raw[label] = {
                "latency_ms": value,
                "neighbour_status": ended.status,
                "neighbour_error": ended.error[:300],
            }
    return BenchResult(NAME, figures, raw)
