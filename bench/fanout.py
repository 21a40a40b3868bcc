"""N WebSocket clients on one web process, all following one task's stream.

One task's fake CLI waits until all N sockets have connected and replayed its init
line, then prints paced text deltas. Each client must get every event exactly once and
in order, then `end`. Measured: complete clients and events, and per delta per client
the time from the CLI writing it to that client receiving it. Baseline: the same task
followed by a single client (which also warms the path up).
"""

from __future__ import annotations

from bench.context import Context
from bench.report import BenchResult, Figure
from bench.stats import summarize_ms
from bench.streaming import incomplete, latencies, stream_tasks

NAME = "fanout"
NEEDS_STACK = True
GOAL_P99_MS = 250.0


def run(ctx: Context) -> BenchResult:
    sizes = ctx.sizes
    clients, lines = sizes.fanout_clients, sizes.fanout_lines
    with ctx.services("bench-fanout", concurrency=4) as services:
        plan = {"tasks": 1, "lines": lines, "interval_ms": sizes.fanout_interval_ms}
        single = stream_tasks(ctx, services, clients_per_task=1, **plan).watches
        fanned = stream_tasks(ctx, services, clients_per_task=clients, **plan)
    watches, tasks = fanned.watches, fanned.tasks
    last_seq = tasks[0].last_seq
    missing = incomplete(watches, tasks)
    received = sum(len(w.seqs) for w in watches)
    value, base = summarize_ms(latencies(watches)), summarize_ms(latencies(single))
    label = f"{clients} WS clients on one task ({1000 / sizes.fanout_interval_ms:g} lines/s)"
    figures = [
        Figure(
            f"{label}: complete streams",
            float(clients - missing),
            None,
            "",
            goal="all delivered",
            met=missing == 0,
            text=f"{clients - missing}/{clients} ({received:,}/{clients * last_seq:,} events)",
        ),
        Figure(
            f"{label}: line → client, p99",
            value.p99,
            base.p99,
            "ms",
            goal=f"p99 < {GOAL_P99_MS:g} ms",
            met=value.p99 < GOAL_P99_MS,
        ),
    ]
    raw = {
        "clients": clients,
        "events_per_client": last_seq,
        "incomplete_clients": missing,
        "events_received": received,
        "latency_ms": value,
        "single_client_ms": base,
        "connect_ms": summarize_ms([w.connect_s for w in watches]),
        "cpu_during_stream": fanned.cpu,
    }
    return BenchResult(NAME, figures, raw)
