"""The two channel layers side by side: channels-redis' list-based core layer (the
baseline) and its pub/sub layer as agentsite/channel_layer.py bounds it.

Each layer gets its own fresh web and worker (CHANNEL_LAYER=core or pubsub) and runs
the same two loads as `streaming` and `fanout`: many streams with one client each, and
one stream with many clients. Per layer: line → client p50/p99 and web CPU per
delivered message (from /proc).
"""

from __future__ import annotations

from typing import Any

from bench import streaming
from bench.context import Context
from bench.report import BenchResult, Figure
from bench.stack import one_connection_per_slot
from bench.stats import Summary, summarize_ms
from bench.streaming import StreamRun, incomplete, latencies, stream_tasks

NAME = "channel_layer"
NEEDS_STACK = True
LAYERS = ("core", "pubsub")


def measured(streamed: StreamRun) -> tuple[Summary, float]:
    """Latency and web CPU milliseconds per message delivered to a client."""
    missing = incomplete(streamed.watches, streamed.tasks)
    if missing:
        raise RuntimeError(f"{missing} clients missed events")
    delivered = sum(len(w.seqs) for w in streamed.watches)
    return summarize_ms(latencies(streamed.watches)), streamed.cpu["web_cpu_s"] * 1000 / delivered


def run(ctx: Context) -> BenchResult:
    sizes = ctx.sizes
    loads = {
        "streams": {
            "tasks": sizes.streams_multi,
            "clients_per_task": 1,
            "lines": sizes.stream_lines_multi,
            "interval_ms": sizes.stream_interval_multi_ms,
        },
        "fanout": {
            "tasks": 1,
            "clients_per_task": sizes.fanout_clients,
            "lines": sizes.fanout_lines,
            "interval_ms": sizes.fanout_interval_ms,
        },
    }
    concurrency = max(4, sizes.streams_multi)
    results: dict[str, dict[str, tuple[Summary, float]]] = {}
    for layer in LAYERS:
        env = {"CHANNEL_LAYER": layer}
        worker_env = one_connection_per_slot()
        with ctx.services(f"bench-layer-{layer}", concurrency, worker_env, env=env) as services:
            streaming.stream_tasks(ctx, services, tasks=1, clients_per_task=1, lines=10,
                                   interval_ms=20.0)  # fmt: skip
            results[layer] = {
                load: measured(stream_tasks(ctx, services, **plan)) for load, plan in loads.items()
            }
    labels = {
        "streams": f"{sizes.streams_multi} streams x {1000 / sizes.stream_interval_multi_ms:g} "
        "lines/s",
        "fanout": f"{sizes.fanout_clients} clients on one task",
    }
    figures: list[Figure] = []
    raw: dict[str, Any] = {}
    for load, label in labels.items():
        (core, core_cpu), (pubsub, pubsub_cpu) = results["core"][load], results["pubsub"][load]
        name = f"pub/sub layer vs core, {label}"
        figures += [
            Figure(f"{name}: line → client p50", pubsub.p50, core.p50, "ms"),
            Figure(f"{name}: line → client p99", pubsub.p99, core.p99, "ms"),
            Figure(f"{name}: web CPU per message", pubsub_cpu, core_cpu, "ms"),
        ]
        raw[load] = {
            layer: {"latency_ms": summary, "web_cpu_ms_per_message": cpu}
            for layer, (summary, cpu) in ((k, v[load]) for k, v in results.items())
        }
    return BenchResult(NAME, figures, raw)
