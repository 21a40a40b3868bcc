"""WebSocket clients that follow task streams and time every live text delta.

Real `websockets` asyncio clients authenticated with `Authorization: Token`, one
connection per watch, like a browser tab (permessage-deflate offered, as browsers do).
A delta's latency is `time.time()` when the client's coroutine first gets it (in a
preview of the block being written, or in a stored event) minus the `time.time()` the
fake CLI wrote into it just before writing the line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bench.fake_cli import parse_delta_texts

T = TypeVar("T")
CONNECT_CONCURRENCY = 50
READY_TIMEOUT_S = 120.0
MIDWAY_POLL_S = 0.005


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """uvloop when installed (uvicorn[standard] brings it): less client CPU per message."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


@dataclass
class Watch:
    task_id: int
    seqs: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    by_index: dict[int, float] = field(default_factory=dict)  # delta index → latency
    ended: str | None = None
    connect_s: float = 0.0
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def complete(self, last_seq: int, status: str = "succeeded") -> bool:
        """Every event exactly once and in order, then `end` with the task's status."""
        return self.ended == status and self.seqs == list(range(1, last_seq + 1))


def stream_url(web_url: str, task_id: int) -> str:
    return "ws" + web_url.removeprefix("http") + f"/ws/tasks/{task_id}/?after=0"


def _record(watch: Watch, raw: str | bytes, received_at: float) -> None:
    message = json.loads(raw)
    kind = message.get("type")
    if kind == "end":
        watch.ended = message.get("status")
    if kind not in ("event", "preview"):
        return
    if kind == "event":
        watch.seqs.append(message["seq"])
    payload = message.get("payload") or {}
    if message["kind"] == "text":
        for index, written_at in parse_delta_texts(str(payload.get("text", ""))):
            if index not in watch.by_index:
                watch.by_index[index] = received_at - written_at
                watch.latencies.append(received_at - written_at)
    elif message["kind"] == "system" and payload.get("subtype") == "init":
        watch.ready.set()


async def follow(web_url: str, token: str, watch: Watch, gate: asyncio.Semaphore) -> None:
    """Connect (at most CONNECT_CONCURRENCY handshakes at once), then read until closed."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosedError

    async with gate:
        started = time.perf_counter()
        ws = await connect(
            stream_url(web_url, watch.task_id),
            additional_headers={"Authorization": f"Token {token}"},
            proxy=None,
            max_size=None,
            open_timeout=60,
            close_timeout=5,
        )
        watch.connect_s = time.perf_counter() - started
    try:
        async for raw in ws:
            _record(watch, raw, time.time())
    except ConnectionClosedError:
        pass  # an abnormal close shows as an incomplete watch
    finally:
        await ws.close()


async def _until_ready(watches: list[Watch], runners: list[asyncio.Task[None]]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not all(w.ready.is_set() for w in watches):
        for runner in runners:
            if runner.done() and runner.exception() is not None:
                raise RuntimeError("a WebSocket client failed") from runner.exception()
        if time.monotonic() > deadline:
            ready = sum(w.ready.is_set() for w in watches)
            raise TimeoutError(f"only {ready}/{len(watches)} sockets saw their task start")
        await asyncio.sleep(0.01)


async def _at_midway(watches: list[Watch], deltas: int, callback: Callable[[int], None]) -> None:
    while any(len(w.by_index) < deltas for w in watches):
        if all(w.ended is not None for w in watches):
            return  # some stream ended short: the watches show it
        await asyncio.sleep(MIDWAY_POLL_S)
    callback(sum(len(w.by_index) for w in watches))


async def watch_tasks(
    web_url: str,
    token: str,
    task_ids: list[int],
    go_file: Path,
    timeout_s: float,
    on_release: Callable[[], None] | None = None,
    midway: tuple[int, Callable[[int], None]] | None = None,
) -> list[Watch]:
    """One socket per id; once all replayed their task's init event, `go_file` releases
    the CLIs (`on_release` runs just before), and every socket is read until the server
    closes it. `midway` (n, callback): once every socket has n deltas, callback gets the
    number of deltas all sockets have by then."""
    watches = [Watch(task_id) for task_id in task_ids]
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    runners = [asyncio.create_task(follow(web_url, token, w, gate)) for w in watches]
    try:
        await _until_ready(watches, runners)
        if on_release is not None:
            on_release()
        go_file.touch()
        if midway is not None:
            runners.append(asyncio.create_task(_at_midway(watches, *midway)))
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(*runners)
    finally:
        for runner in runners:
            runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*runners, return_exceptions=True)
    return watches


async def redis_round_trips(
    redis_url: str, channels: int, messages: int, interval_ms: float
) -> list[float]:
    """Baseline: PUBLISH → SUBSCRIBE latency of `messages` per channel at the same pace."""
    import uuid

    import redis.asyncio as aioredis

    names = [f"agentsite-bench:{uuid.uuid4().hex}:{i}" for i in range(channels)]
    subscriber = aioredis.Redis.from_url(redis_url)
    publisher = aioredis.Redis.from_url(redis_url)
    pubsub = subscriber.pubsub()
    latencies: list[float] = []
    try:
        await pubsub.subscribe(*names)
        confirmed = 0
        while confirmed < channels:
            message = await pubsub.get_message(timeout=5)
            confirmed += message is not None and message["type"] == "subscribe"

        async def read() -> None:
            while len(latencies) < channels * messages:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
                if message is not None:
                    latencies.append(time.time() - float(message["data"]))

        reader = asyncio.create_task(read())
        begin = time.monotonic()
        for index in range(messages):
            pause = begin + index * interval_ms / 1000 - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            for name in names:
                await publisher.publish(name, repr(time.time()))
        await asyncio.wait_for(reader, 30)
    finally:
        await pubsub.aclose()
        await subscriber.aclose()
        await publisher.aclose()
    return latencies
