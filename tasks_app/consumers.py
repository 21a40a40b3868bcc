"""WebSocket consumers: one task's event stream, and the status changes of a user's tasks.

The database is the source of truth; the channel layer only says "there is more". A
task socket joins its group before replaying, drops what it already sent, and reads any
gap in seqs back from the database, so every event reaches the client exactly once and
in order whatever happens to the pushes (lost, late, too large, another web process).

Server messages: {"type": "event", "seq", "kind", "attempt", "payload", "created"};
{"type": "preview", "after", "kind", "payload"}: the text block being written, not
stored yet, to show after event `after` until an event with a higher seq comes (sent
only to a client that has every event up to `after`; each replaces the one before);
{"type": "status", "status", "task"} once after the replay (the current status) and
after every status event; {"type": "end", "status"} after a terminal one, then close
1000. Refusals: 4400 bad `after`, 4401 no auth, 4403 foreign Origin (ws_auth), 4404
not found or not yours, 4429 over AGENT_MAX_WS_PER_USER, 1013 Redis unavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import parse_qs

import structlog
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import DatabaseError
from redis.exceptions import RedisError

from tasks_app import selectors
from tasks_app.metrics import WEBSOCKETS
from tasks_app.models import TaskStatus
from tasks_app.services import ws_connections
from tasks_app.services.broadcast import event_message, task_group, task_snapshot, user_group

log = structlog.get_logger(__name__)

CLOSE_NORMAL = 1000
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_MANY = 4429

REPLAY_CHUNK = 500
MAX_AFTER = 2**31
TERMINAL = frozenset(str(s) for s in TaskStatus.terminal())


@database_sync_to_async
def _load_task(owner: AbstractBaseUser, task_id: int) -> tuple[str, dict[str, Any]] | None:
    """(status, snapshot) of the owner's task, or None: others' tasks do not exist."""
    task = selectors.task_get(owner=owner, task_id=task_id)
    return None if task is None else (task.status, task_snapshot(task))


@database_sync_to_async
def _events_after(task_id: int, after: int) -> list[dict[str, Any]]:
    rows = selectors.task_events(task_id=task_id, after=after, limit=REPLAY_CHUNK)
    return [event_message(row) for row in rows]


def parse_after(query_string: bytes) -> int | None:
    """The `after` parameter: absent is 0; anything but one integer in range is None."""
    values = parse_qs(query_string.decode("latin1"), keep_blank_values=True).get("after")
    if values is None:
        return 0
    if len(values) != 1 or not values[0].isdigit() or not values[0].isascii():
        return None
    after = int(values[0])
    return after if after <= MAX_AFTER else None


class LiveSocket(AsyncJsonWebsocketConsumer):
    """What both sockets share: auth, the connection cap, the heartbeat, safe sends.

    Handlers run one at a time (Channels dispatches serially); the heartbeat runs beside
    them, so whatever sends holds `_lock` to keep messages in order.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user: Any = None
        self.joined: list[str] = []
        self._has_slot = False
        self._closed = False
        self._lock = asyncio.Lock()
        self._heartbeat: asyncio.Task[None] | None = None

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels hops to a thread to close stale DB connections before every handler:
        # with hundreds of sockets on a task that is one hop per socket per line, most of
        # a web process's time. Our handlers reach the database only through
        # database_sync_to_async, which closes them around each call itself.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Also when the app crashed or the client vanished mid-send: no slot leaks.
            await self._release()

    # Subclasses: check the request (return a close code to refuse), then start streaming.
    async def authorize(self) -> int | None:
        raise NotImplementedError

    async def start_stream(self) -> None:
        pass

    async def on_heartbeat(self) -> None:
        pass

    async def connect(self) -> None:
        # Accept first: a refusal then carries its close code instead of a bare 403.
        await self.accept()
        self.user = self.scope["user"]
        if not self.user.is_authenticated:
            return await self.close_with(CLOSE_UNAUTHORIZED)
        refusal = await self.authorize()
        if refusal is not None:
            return await self.close_with(refusal)
        try:
            self._has_slot = await ws_connections.acquire_slot(
                user_id=self.user.pk, channel_name=self.channel_name
            )
            if not self._has_slot:
                return await self.close_with(CLOSE_TOO_MANY)
            WEBSOCKETS.inc()
            for group in self.joined:
                await self.channel_layer.group_add(group, self.channel_name)
        except (RedisError, OSError) as exc:
            log.warning("ws_connect_redis_failed", user_id=self.user.pk, error=str(exc))
            return await self.close_with(CLOSE_TRY_AGAIN_LATER)
        async with self._lock:
            await self.start_stream()
        if not self._closed:
            self._heartbeat = asyncio.create_task(self._beat())

    async def disconnect(self, code: int) -> None:
        await self._release()

    async def send_message(self, message: dict[str, Any]) -> None:
        if self._closed:
            return
        try:
            await self.send_json(message)
        except (OSError, RuntimeError) as exc:
            # The client went away mid-send (uvicorn raises either, depending on who
            # noticed first); stop quietly, the finally in __call__ cleans up.
            self._closed = True
            raise StopConsumer from exc

    async def close_with(self, code: int) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError, RuntimeError):
            await self.close(code)

    async def _beat(self) -> None:
        while not self._closed:
            await asyncio.sleep(settings.AGENT_WS_HEARTBEAT_S)
            async with self._lock:
                if self._closed:
                    return
                try:
                    await ws_connections.renew_slot(
                        user_id=self.user.pk, channel_name=self.channel_name
                    )
                    # Group membership expires in channels-redis after a day; renew it too.
                    for group in self.joined:
                        await self.channel_layer.group_add(group, self.channel_name)
                    await self.on_heartbeat()
                except StopConsumer:
                    return
                except (RedisError, OSError, DatabaseError, RuntimeError) as exc:
                    # RuntimeError: redis-py writing to a connection whose (uvloop)
                    # transport a Redis outage closed. A heartbeat that died here would
                    # leave its socket waiting for pushes alone, for ever.
                    log.warning("ws_heartbeat_failed", user_id=self.user.pk, error=str(exc))

    async def _release(self) -> None:
        self._closed = True
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None and heartbeat is not asyncio.current_task():
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        joined, self.joined = self.joined, []
        has_slot, self._has_slot = self._has_slot, False
        if has_slot:
            WEBSOCKETS.dec()
        try:
            for group in joined:
                await self.channel_layer.group_discard(group, self.channel_name)
            if has_slot:
                await ws_connections.release_slot(
                    user_id=self.user.pk, channel_name=self.channel_name
                )
        except (RedisError, OSError) as exc:
            # Group entries and slots expire on their own; nothing is stuck for long.
            log.warning("ws_release_failed", user_id=self.user.pk, error=str(exc))


class TaskStreamConsumer(LiveSocket):
    """`/ws/tasks/<id>/?after=SEQ`: replay, then live events, then `end` and close 1000."""

    async def authorize(self) -> int | None:
        after = parse_after(self.scope.get("query_string", b""))
        if after is None:
            return CLOSE_BAD_REQUEST
        self.task_id: int = self.scope["url_route"]["kwargs"]["task_id"]
        loaded = await _load_task(self.user, self.task_id)
        if loaded is None:
            return CLOSE_NOT_FOUND
        # Read before joining the group: if the task had finished by then, all its
        # events were committed, and the replay below is guaranteed to include them.
        self.initial_status, self.initial_snapshot = loaded
        self.last_sent = after
        self.joined = [task_group(self.task_id)]
        return None

    async def start_stream(self) -> None:
        status = await self._catch_up() or self.initial_status
        await self._announce(status, self.initial_snapshot)

    async def on_heartbeat(self) -> None:
        # A push lost on the way (Redis hiccup, a full channel) must not stall the client.
        status = await self._catch_up()
        if status is not None:
            await self._announce(status, None)

    async def task_events(self, message: dict[str, Any]) -> None:
        async with self._lock:
            if self._closed or message["last_seq"] <= self.last_sent:
                return
            fresh = [e for e in message["events"] if e["seq"] > self.last_sent]
            if fresh and fresh[0]["seq"] == self.last_sent + 1:
                status = await self._send_events(fresh)
            else:
                # A gap: a push we never got, or a batch too big to travel inline.
                status = await self._catch_up()
            if status is not None:
                await self._announce(status, message.get("snapshot"))

    async def task_preview(self, message: dict[str, Any]) -> None:
        async with self._lock:
            if self._closed or message["after"] < self.last_sent:
                return  # the block was stored meanwhile: the client has it as an event
            if message["after"] > self.last_sent:
                status = await self._catch_up()  # a push we never got
                if status is not None:
                    await self._announce(status, None)
                if self._closed or message["after"] != self.last_sent:
                    return
            await self.send_message(
                {
                    "type": "preview",
                    "after": message["after"],
                    "kind": message["kind"],
                    "payload": message["payload"],
                }
            )

    async def _catch_up(self) -> str | None:
        """Send stored events after the last one sent; returns the last status among them."""
        last_status = None
        while not self._closed:
            events = await _events_after(self.task_id, self.last_sent)
            last_status = await self._send_events(events) or last_status
            if len(events) < REPLAY_CHUNK:
                break
        return last_status

    async def _send_events(self, events: list[dict[str, Any]]) -> str | None:
        last_status = None
        for event in events:
            if event["seq"] <= self.last_sent:
                continue
            await self.send_message(event)
            self.last_sent = event["seq"]
            if event["kind"] == "status":
                last_status = str(event["payload"].get("status", ""))
        return last_status

    async def _announce(self, status: str, snapshot: dict[str, Any] | None) -> None:
        """The status message after a status event; `end` and close when it is terminal."""
        if snapshot is None or snapshot.get("status") != status:
            loaded = await _load_task(self.user, self.task_id)
            if loaded is None:
                return await self.close_with(CLOSE_NOT_FOUND)
            snapshot = loaded[1]
        await self.send_message({"type": "status", "status": status, "task": snapshot})
        if status in TERMINAL:
            await self.send_message({"type": "end", "status": status})
            await self.close_with(CLOSE_NORMAL)


class DashboardConsumer(LiveSocket):
    """`/ws/dashboard/`: a status message whenever one of the user's tasks changes."""

    async def authorize(self) -> int | None:
        self.joined = [user_group(self.user.pk)]
        return None

    async def task_status(self, message: dict[str, Any]) -> None:
        snapshot = message.get("task")
        if snapshot is None:
            loaded = await _load_task(self.user, message["task_id"])
            if loaded is None:
                return
            snapshot = loaded[1]
        async with self._lock:
            await self.send_message(
                {"type": "status", "status": message["status"], "task": snapshot}
            )
