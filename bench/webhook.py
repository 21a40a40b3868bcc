"""Webhook answer time: bursts of N concurrent signed GitHub deliveries.

Each delivery is an `issue_comment` mentioning the trigger phrase on a registered
repository, so it takes the full accepted path (verify, classify, insert, enqueue);
a worker processes the jobs (the fake GitHub grants only `read`, so no task starts).
Measured per request: from before `connect()` to the last byte of the answer, on a new
connection (as GitHub delivers). Baseline: identical bursts of `GET /healthz`,
interleaved with the webhook bursts. Between bursts the worker drains its jobs, so each
burst meets an idle system. Warm-up bursts are excluded. Measured with one web process
(the default) and with one per core (WEB_CONCURRENCY), each a fresh server.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

from bench import db
from bench.context import Context
from bench.httpclient import Answer, Endpoint, build_request, exchange
from bench.procstat import CpuMeter
from bench.report import BenchResult, Figure
from bench.stats import summarize_ms
from tests.live import wait_until
from tests.tasks_app.github import payloads

NAME = "webhook"
NEEDS_STACK = True
# The webhook's p99 against healthz's on the same bursts (issue 14's goal; the first
# bench's, p99 < 25 ms, would need about 0.25 ms of Python a request).
GOAL_P99_RATIO = 1.5
DRAIN_TIMEOUT_S = 120.0


def delivery_requests(endpoint: Endpoint, count: int) -> list[bytes]:
    requests = []
    for number in range(count):
        body = payloads.encode(payloads.issue_comment(number=number + 1))
        headers = payloads.headers(body, delivery=str(uuid.uuid4()))
        requests.append(build_request("POST", "/webhooks/github/", endpoint, headers, body))
    return requests


def health_requests(endpoint: Endpoint, count: int) -> list[bytes]:
    return [build_request("GET", "/healthz", endpoint, {})] * count


async def burst(endpoint: Endpoint, requests: list[bytes]) -> list[Answer]:
    return await asyncio.gather(*(exchange(endpoint, request) for request in requests))


def run_burst(endpoint: Endpoint, requests: list[bytes], expected: int) -> list[float]:
    answers = asyncio.run(burst(endpoint, requests))
    wrong = [a.status for a in answers if a.status != expected]
    if wrong:
        raise RuntimeError(f"{len(wrong)} answers were not {expected}: {sorted(set(wrong))}")
    wait_until(
        lambda: db.pending_deliveries() == 0, DRAIN_TIMEOUT_S, "the GitHub jobs", poll_s=0.05
    )
    return [a.seconds for a in answers]


@dataclass
class Measured:
    hooks: list[float] = field(default_factory=list)  # answer times, seconds
    health: list[float] = field(default_factory=list)
    # CPU seconds from the first request of a burst until its jobs are drained, summed
    # over the measured bursts of each kind: web and worker (main and pool processes).
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)

    def add_cpu(self, kind: str, used: dict[str, float]) -> None:
        total = self.cpu.setdefault(kind, {})
        for key, value in used.items():
            total[key] = round(total.get(key, 0.0) + value, 3)


def measure(ctx: Context, web_processes: int) -> Measured:
    """Answer times and CPU of the measured bursts (warm-up bursts left out)."""
    sizes = ctx.sizes
    measured = Measured()
    name = f"bench-webhook-{web_processes}"
    with ctx.services(name, concurrency=4, web_processes=web_processes) as services:
        endpoint = services.endpoint
        meter = CpuMeter(services.web.pid, services.worker_pids)
        for round_no in range(sizes.webhook_warmup_bursts + sizes.webhook_bursts):
            meter.start()
            health_times = run_burst(
                endpoint, health_requests(endpoint, sizes.webhook_concurrency), 200
            )
            health_cpu = meter.stop()
            meter.start()
            hook_times = run_burst(
                endpoint, delivery_requests(endpoint, sizes.webhook_concurrency), 202
            )
            hook_cpu = meter.stop()
            if round_no >= sizes.webhook_warmup_bursts:
                measured.health.extend(health_times)
                measured.hooks.extend(hook_times)
                measured.add_cpu("healthz", health_cpu)
                measured.add_cpu("webhook", hook_cpu)
    return measured


def run(ctx: Context) -> BenchResult:
    n = ctx.sizes.webhook_concurrency
    db.register_repository(payloads.REPO, "bench")
    figures: list[Figure] = []
    raw: dict[str, Any] = {"concurrency": n, "bursts": ctx.sizes.webhook_bursts}
    # One web process is the default; one per core is how a busy site would run it.
    for web_processes in sorted({1, os.cpu_count() or 1}):
        measured = measure(ctx, web_processes)
        hook, base = summarize_ms(measured.hooks), summarize_ms(measured.health)
        noun = "process" if web_processes == 1 else "processes"
        label = f"webhook: {n} concurrent signed deliveries, {web_processes} web {noun}"
        figures += [
            Figure(f"{label}, p50", hook.p50, base.p50, "ms"),
            Figure(
                f"{label}, p99",
                hook.p99,
                base.p99,
                "ms",
                goal=f"≤ {GOAL_P99_RATIO:g}x healthz",
                met=hook.p99 <= GOAL_P99_RATIO * base.p99,
            ),
        ]
        raw[f"web_processes_{web_processes}"] = {
            "webhook_ms": hook,
            "healthz_ms": base,
            "cpu_s_of_the_bursts": measured.cpu,
        }
    return BenchResult(NAME, figures, raw)
