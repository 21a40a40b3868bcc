"""The soak's WebSocket clients: each follows a recent task for a few seconds, hangs up,
and comes back later asking only for what it has not seen (`?after=`), as a browser tab
does across a flaky network. Every event must arrive exactly once and in order.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.fake_cli import parse_delta_texts

VISIT_S = (1.0, 6.0)  # how long a client stays before hanging up
PAUSE_S = (0.0, 1.0)  # between two visits
OPEN_TIMEOUT_S = 15.0


@dataclass
class ClientStats:
    """Shared by every client (one event loop thread: no lock needed inside it)."""

    visits: int = 0
    events: int = 0
    gaps: int = 0  # an event whose seq was not the next one this client expected
    duplicates: int = 0
    errors: list[str] = field(default_factory=list)
    lags: list[tuple[float, float]] = field(default_factory=list)  # (received at, seconds)


def stream_url(web_url: str, task_id: int, after: int) -> str:
    return "ws" + web_url.removeprefix("http") + f"/ws/tasks/{task_id}/?after={after}"


class Visit:
    """One connection's reading: seqs against what this client saw before."""

    def __init__(self, stats: ClientStats, seen: dict[int, int], task_id: int) -> None:
        self.stats, self.seen, self.task_id = stats, seen, task_id
        self.live = False  # the first status message ends the replay
        self.ended = False
        self.timed: set[int] = set()  # deltas timed, first seen in a preview or an event

    def take(self, raw: str | bytes, received_at: float) -> None:
        message = json.loads(raw)
        kind = message.get("type")
        if kind == "status":
            self.live = True
        elif kind == "end":
            self.ended = True
        if kind == "preview":
            self.time_deltas(message, received_at)
        if kind != "event":
            return
        seq, expected = int(message["seq"]), self.seen.get(self.task_id, 0) + 1
        self.stats.events += 1
        if seq < expected:
            self.stats.duplicates += 1
            return
        if seq > expected:
            self.stats.gaps += 1
        self.seen[self.task_id] = seq
        self.time_deltas(message, received_at)

    def time_deltas(self, message: dict[str, Any], received_at: float) -> None:
        if self.live and message.get("kind") == "text":
            text = str((message.get("payload") or {}).get("text", ""))
            for index, written_at in parse_delta_texts(text):
                if index not in self.timed:
                    self.timed.add(index)
                    self.stats.lags.append((received_at, received_at - written_at))


async def client(
    web_url: str,
    token: str,
    recent: Callable[[], list[int]],
    stats: ClientStats,
    stopping: asyncio.Event,
) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import WebSocketException

    seen: dict[int, int] = {}
    while not stopping.is_set():
        ids = recent()
        if not ids:
            await asyncio.sleep(0.5)
            continue
        task_id = random.choice(ids)
        visit = Visit(stats, seen, task_id)
        stats.visits += 1
        try:
            async with asyncio.timeout(random.uniform(*VISIT_S)):
                async with connect(
                    stream_url(web_url, task_id, seen.get(task_id, 0)),
                    additional_headers={"Authorization": f"Token {token}"},
                    proxy=None,
                    max_size=None,
                    open_timeout=OPEN_TIMEOUT_S,
                    close_timeout=5,
                ) as ws:
                    async for raw in ws:
                        visit.take(raw, time.time())
        except TimeoutError:
            pass  # the visit is over: hang up, come back later
        except (OSError, WebSocketException) as exc:
            stats.errors.append(f"task {task_id}: {type(exc).__name__}: {exc}")
        await asyncio.sleep(random.uniform(*PAUSE_S))


class Clients:
    """`count` clients on an event loop in a thread of their own; `stop()` joins it."""

    def __init__(
        self, web_url: str, token: str, recent: Callable[[], list[int]], count: int
    ) -> None:
        self.stats = ClientStats()
        self._args = (web_url, token, recent)
        self._count = count
        self._loop = asyncio.new_event_loop()
        self._stopping = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="soak-ws", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            runners = [
                asyncio.create_task(client(*self._args, self.stats, self._stopping))
                for _ in range(self._count)
            ]
            await asyncio.gather(*runners)

        self._loop.run_until_complete(main())
        self._loop.close()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Idempotent: the soak stops its clients itself, and again on the way out."""
        if not self._thread.is_alive():
            return
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=max(VISIT_S) + OPEN_TIMEOUT_S + 10)
