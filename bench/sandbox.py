"""What the agent sandbox costs, measured against AGENT_SANDBOX=off in the same run.

- start: API POST → CLI started (the fake CLI's first statement), one task at a time on
  idle workers, as `start` measures it, with the sandbox on and off.
- gateway: model text delta sent → WebSocket client received, for one stream of the
  real CLI against the scripted fake model: through the sandbox's model gateway (on)
  and straight to the fake (off). The CLI is in both paths; the ratio is what the
  gateway, the in-sandbox relay and the namespaces add.
- memory: while the real CLI waits on a held model reply, the resident memory of the
  run's processes (bubblewrap, the sandbox's first process, the CLI and its helpers)
  plus the worker pool process that supervises it (the gateway and proxy live there),
  on and off.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import db, fake_cli, procstat
from bench.context import Context
from bench.httpclient import post_task
from bench.report import BenchResult, Figure
from bench.stack import ROOT, Services
from bench.start import post_to_cli_start
from bench.stats import summarize_ms
from bench.ws import run_loop, stream_url
from tests.fakes.anthropic_api import FakeAnthropic, Hang, Text

NAME = "sandbox"
NEEDS_STACK = True
GOAL_START_OVERHEAD_MS = 50.0
GOAL_GATEWAY_RATIO = 1.1
CLAUDE = ROOT / "node_modules" / ".bin" / "claude"
DELTA_INTERVAL_S = 0.05
STREAM_TIMEOUT_S = 120.0


def real_cli_env(model_url: str, sandbox: str) -> dict[str, str]:
    return {"AGENT_CLI": str(CLAUDE), "ANTHROPIC_BASE_URL": model_url, "AGENT_SANDBOX": sandbox}


# -- gateway: text delta → client --------------------------------------------------------


CHUNK = re.compile(r"<\d{5}>")


@dataclass
class TextWatch:
    # chunk → time.time() it first showed, in a preview or a stored (merged) delta
    received: dict[str, float] = field(default_factory=dict)
    ready_at: float = 0.0
    ended: str | None = None


async def follow_texts(web_url: str, token: str, task_id: int, watch: TextWatch) -> None:
    import json

    from websockets.asyncio.client import connect

    async with connect(
        stream_url(web_url, task_id),
        additional_headers={"Authorization": f"Token {token}"},
        proxy=None,
        max_size=None,
        open_timeout=60,
    ) as ws:
        watch.ready_at = time.time()
        async with asyncio.timeout(STREAM_TIMEOUT_S):
            async for raw in ws:
                message = json.loads(raw)
                if message.get("type") == "end":
                    watch.ended = message.get("status")
                elif message.get("type") in ("event", "preview") and message["kind"] == "text":
                    text = str((message.get("payload") or {}).get("text", ""))
                    for chunk in CHUNK.findall(text):
                        watch.received.setdefault(chunk, time.time())


def stored_at(task_id: int) -> dict[str, float]:
    """Chunk → when the worker stored it (TaskEvent.created; merged deltas hold several)."""
    from tasks_app.models import TaskEvent

    rows = TaskEvent.objects.filter(task_id=task_id, kind="text").values_list("payload", "created")
    return {
        chunk: created.timestamp()
        for payload, created in rows
        for chunk in CHUNK.findall(str(payload.get("text")))
    }


def stream_once(
    ctx: Context, services: Services, fake: FakeAnthropic, deltas: int, stored: list[float]
) -> list[float]:
    """One task whose model reply is `deltas` unique chunks, paced; latencies in seconds
    of the deltas sent after the client was following (and, into `stored`, from sent to
    stored by the worker: the part the gateway can add to)."""
    marker = f"[gw-{uuid.uuid4().hex[:8]}]"
    chunks = "".join(f"<{i:05d}>" for i in range(deltas))
    fake.script(marker, Text(chunks, chunk_chars=7, delay_s=DELTA_INTERVAL_S))
    task_id = post_task(services.endpoint, ctx.token, f"{marker} stream")
    watch = TextWatch()
    run_loop(follow_texts(services.web_url, ctx.token, task_id, watch))
    if watch.ended != "succeeded":
        raise RuntimeError(f"gateway stream task {task_id} ended {watch.ended}")
    sent = fake.text_deltas(marker)
    at = stored_at(task_id)
    stored += [at[d.text] - d.sent_at for d in sent if d.sent_at > watch.ready_at and d.text in at]
    return [
        watch.received[d.text] - d.sent_at
        for d in sent
        if d.sent_at > watch.ready_at and d.text in watch.received
    ]


# -- memory of a held run ----------------------------------------------------------------


# Started as node_modules/.bin/claude (off) or by its real path (on).
CLI_NAMES = frozenset({"claude", "claude.exe"})


def commands(pids: list[int]) -> list[str]:
    names = []
    for pid in pids:
        try:
            names.append(Path(f"/proc/{pid}/comm").read_text().strip())
        except OSError:
            continue
    return names


def held_run_memory(ctx: Context, services: Services, fake: FakeAnthropic) -> dict[str, Any]:
    """Memory while a run waits on its model reply: its processes and its pool process."""
    from tests.live import wait_until

    marker = f"[mem-{uuid.uuid4().hex[:8]}]"
    fake.script(marker, Hang())
    task_id = post_task(services.endpoint, ctx.token, f"{marker} hold")
    try:
        wait_until(lambda: fake.requests(marker), 60, "the held model request", poll_s=0.05)
        pools = procstat.children(services.worker.pid)
        busy = [pool for pool in pools if procstat.children(pool)]
        if len(busy) != 1:
            raise RuntimeError(f"expected one pool process running the CLI, found {busy}")

        # The CLI itself must be among them (it is what asked the model).
        def run_processes() -> list[int]:
            return procstat.descendants(busy[0])

        wait_until(lambda: CLI_NAMES & set(commands(run_processes())), 30, "the CLI process")
        run = procstat.memory(run_processes())
        run["commands"] = commands(run_processes())
        pool = procstat.memory(busy)
    finally:
        fake.release()
    db.finished_tasks([task_id], 60)
    return {"run": run, "pool_process": pool, "total_rss_mib": run["rss_mib"] + pool["rss_mib"]}


# -- the benchmark -----------------------------------------------------------------------


def run(ctx: Context) -> BenchResult:
    sizes = ctx.sizes
    prompt = fake_cli.prompt(lines=1)
    starts: dict[str, list[float]] = {}
    latencies: dict[str, list[float]] = {"on": [], "off": []}
    stored: dict[str, list[float]] = {"on": [], "off": []}
    memory: dict[str, dict[str, Any]] = {}
    for mode in ("off", "on"):
        with ctx.services(f"bench-sandbox-{mode}", 4, {"AGENT_SANDBOX": mode}) as services:
            starts[mode] = post_to_cli_start(ctx, services, prompt).total
    # Rounds alternate the modes (off, on, then on, off, ...) so that a slower or faster
    # spell of the machine weighs on both alike.
    rounds = sizes.gateway_streams
    for index in range(rounds):
        for mode in ("off", "on") if index % 2 == 0 else ("on", "off"):
            # A fake per stack: releasing a held reply (the memory figure) also drops the
            # pace of every later reply.
            with FakeAnthropic() as fake:
                env = real_cli_env(fake.base_url, mode)
                with ctx.services(f"bench-gateway-{mode}-{index}", 1, env) as services:
                    stream_once(ctx, services, fake, 20, [])  # warm-up
                    latencies[mode] += stream_once(
                        ctx, services, fake, sizes.gateway_deltas, stored[mode]
                    )
                    if index == rounds - 1:
                        memory[mode] = held_run_memory(ctx, services, fake)
    start_on, start_off = summarize_ms(starts["on"]), summarize_ms(starts["off"])
    gate_on, gate_off = summarize_ms(latencies["on"]), summarize_ms(latencies["off"])
    overhead = start_on.p50 - start_off.p50
    ratio = gate_on.p99 / gate_off.p99
    figures = [
        Figure(
            "API POST → CLI started p50, sandbox on (base: off)",
            start_on.p50,
            start_off.p50,
            "ms",
            goal=f"overhead ≤ {GOAL_START_OVERHEAD_MS:g} ms",
            met=overhead <= GOAL_START_OVERHEAD_MS,
        ),
        Figure(
            "model delta → WS client p99, through the gateway (base: direct)",
            gate_on.p99,
            gate_off.p99,
            "ms",
            goal=f"≤ {GOAL_GATEWAY_RATIO:g}x",
            met=ratio <= GOAL_GATEWAY_RATIO,
        ),
        Figure(
            "memory per run + its pool process, sandbox on (base: off)",
            memory["on"]["total_rss_mib"],
            memory["off"]["total_rss_mib"],
            "MiB",
        ),
    ]
    raw = {
        "start_ms": {"on": start_on, "off": start_off, "overhead_p50_ms": overhead},
        "gateway_ms": {"on": gate_on, "off": gate_off, "p50_ratio": gate_on.p50 / gate_off.p50},
        "model_to_stored_ms": {mode: summarize_ms(values) for mode, values in stored.items()},
        "memory": memory,
    }
    return BenchResult(NAME, figures, raw)
