"""What tracing costs: API POST → CLI started (as in `start`) on the same stack three
ways, in alternating rounds so that drift hits all alike.

- without: OTEL_SDK_DISABLED=true, the baseline (nothing of OpenTelemetry set up);
- off: the default, no OTLP endpoint (the service's own spans go to the no-op API);
- on: exporting every span over OTLP/HTTP to a collector on loopback (the fake one).

Also measured in this process: the no-op spans one task costs with tracing off
(creating request's traceparent, claim, attempt and CLI spans), per task.
"""

from __future__ import annotations

import time

from bench import fake_cli
from bench.context import Context
from bench.report import BenchResult, Figure
from bench.start import post_to_cli_start
from bench.stats import summarize_ms

NAME = "tracing"
NEEDS_STACK = True
ROUNDS = 3
NOOP_REPEATS = 20_000
GOAL_RATIO = 1.05


def noop_spans_per_task_us() -> float:
    """Microseconds of the tracing calls one task makes, with no provider set."""
    from tasks_app.models import Task
    from tasks_app.services import traces

    task = Task(pk=1, attempts=1, worker="bench@localhost", trace_parent="")

    def one_task() -> None:
        traces.current_trace_parent()
        with traces.attempt_span(task, claim_started_ns=traces.claim_started()):
            with traces.cli_span(task) as span:
                traces.cli_started(span, 1)

    started = time.perf_counter()
    for _ in range(NOOP_REPEATS):
        one_task()
    return (time.perf_counter() - started) / NOOP_REPEATS * 1e6


def run(ctx: Context) -> BenchResult:
    from tests.fakes.otlp_collector import FakeCollector

    prompt = fake_cli.prompt(lines=1)
    samples: dict[str, list[float]] = {"without": [], "off": [], "on": []}
    with FakeCollector() as collector:
        modes: dict[str, dict[str, str]] = {
            "without": {"OTEL_SDK_DISABLED": "true"},
            "off": {},
            "on": {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.base_url},
        }
        for round_index in range(ROUNDS):
            for mode, env in modes.items():
                name = f"bench-tracing-{mode}-{round_index}"
                with ctx.services(name, concurrency=4, env=env) as services:
                    samples[mode] += post_to_cli_start(ctx, services, prompt).total
        spans_received = len(collector.spans())
    if not spans_received:
        raise RuntimeError("tracing on exported nothing: the 'on' figures measured nothing")
    without, off, on = (summarize_ms(samples[mode]) for mode in ("without", "off", "on"))
    noop_us = noop_spans_per_task_us()
    label = "API POST → CLI started"
    ratio_off = off.p50 / without.p50
    figures = [
        Figure(
            f"{label}, tracing off vs without, p50",
            off.p50,
            without.p50,
            "ms",
            goal=f"≤ {GOAL_RATIO:g}x",
            met=ratio_off <= GOAL_RATIO,
        ),
        Figure(f"{label}, tracing on (OTLP, loopback) vs without, p50", on.p50, without.p50, "ms"),
        Figure("no-op tracing calls per task, tracing off", noop_us / 1000, None, "ms"),
    ]
    raw = {
        "without_ms": without,
        "off_ms": off,
        "on_ms": on,
        "noop_calls_per_task_us": noop_us,
        "spans_exported_on": spans_received,
        "rounds": ROUNDS,
    }
    return BenchResult(NAME, figures, raw)
