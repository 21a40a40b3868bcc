"""channels_redis' pub/sub channel layer, with a bound on each consumer's queue.

Against the core (list-based) layer it sends one PUBLISH per group message instead of
one list entry per member channel, and it keeps nothing for a consumer that is gone:
the core layer's receive buffer keeps, for ever, messages that reach a channel while it
closes (django/channels_redis#212; 100 MiB in our 30-minute soak). A consumer that
cannot keep up loses its oldest messages rather than the process its memory; ours fill
any gap in seqs from the database.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

import redis
from channels_redis.pubsub import (
    RedisPubSubChannelLayer,
    RedisPubSubLoopLayer,
    RedisSingleShardConnection,
    _wrap_close,
)
from channels_redis.utils import _consistent_hash, decode_hosts
from redis.backoff import NoBackoff
from redis.connection import AbstractConnection
from redis.retry import Retry

DEFAULT_CAPACITY = 5000
# A publisher's send, or its wait for the answers it left unread, fails when Redis has
# not taken it by then (and is not retried): its caller is a worker between two reads of
# its CLI's output, or a request.
BLOCKING_PUBLISH_TIMEOUT_S = 5.0
# Replies a publisher may leave unread before it waits for them.
MAX_UNREAD_REPLIES = 64
# How long a receive loop waits for a message before it looks again (channels_redis').
RECEIVE_POLL_S = 0.1
log = logging.getLogger("channels_redis.pubsub")  # where the library logs the same failure


class DropOldestQueue(asyncio.Queue[Any]):
    """A queue that, when full, makes room by dropping its oldest item."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.dropped = 0

    def put_nowait(self, item: Any) -> None:
        while self.qsize() >= self.capacity:
            self.get_nowait()
            self.dropped += 1
        super().put_nowait(item)


class PromptShard(RedisSingleShardConnection):
    """channels_redis' connection to one Redis, whose receive loop, finding nothing
    subscribed, slept 100 ms before it looked again: a process's first socket (and the
    first after all of its sockets had gone) got its first messages up to 100 ms late,
    left in the connection meanwhile (36 ms each time, in a test that subscribes 13 ms
    before it publishes). Here the loop waits for the next subscription instead."""

    def __init__(self, host: dict[str, Any], channel_layer: RedisPubSubLoopLayer) -> None:
        super().__init__(host, channel_layer)
        self._subscription = asyncio.Event()

    async def subscribe(self, channel: str) -> None:
        await super().subscribe(channel)
        self._subscription.set()

    async def _do_receiving(self) -> None:
        while True:
            try:
                if self._pubsub is not None and self._pubsub.subscribed:
                    message = await self._pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=RECEIVE_POLL_S
                    )
                    self._receive_message(message)
                else:
                    # No await since the check: a subscription cannot slip in between.
                    self._subscription.clear()
                    await self._subscription.wait()
            except (asyncio.CancelledError, TimeoutError, GeneratorExit):
                raise
            except BaseException:
                log.exception("Unexpected exception in receive task")
                await asyncio.sleep(1)


class BoundedLoopLayer(RedisPubSubLoopLayer):
    def __init__(self, *args: Any, capacity: int = DEFAULT_CAPACITY, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.capacity = capacity
        # Made before any is used (a loop layer connects on its first subscribe).
        self._shards = [PromptShard(shard.host, self) for shard in self._shards]

    async def _subscribe_to_channel(self, channel: str) -> None:
        self.channels[channel] = DropOldestQueue(self.capacity)
        await self._get_shard(channel).subscribe(channel)


class BoundedPubSubChannelLayer(RedisPubSubChannelLayer):
    """RedisPubSubChannelLayer whose per-loop layers bound each channel's queue
    (`capacity` in CONFIG, messages)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._publishers_by_host: list[Publisher] | None = None
        self._publishers_lock = threading.Lock()

    def group_send_blocking(self, group: str, message: dict[str, Any]) -> None:
        """group_send for sync code, in the calling thread: the same PUBLISH on the same
        channel, over a plain blocking connection (see Publisher). Sync code otherwise
        hands the send to an event loop's thread and waits for it: two thread switches
        per push, which cost more than the PUBLISH itself, and under load each waited
        for a CPU."""
        channel = f"{self._kwargs.get('prefix', 'asgi')}__group__{group}"
        publishers = self._publishers()
        publisher = publishers[_consistent_hash(channel, len(publishers))]
        publisher.publish(channel, self.serialize(message))

    def _publishers(self) -> list[Publisher]:
        with self._publishers_lock:
            if self._publishers_by_host is None:
                self._publishers_by_host = [
                    Publisher(_publisher_pool(host))
                    for host in decode_hosts(self._kwargs.get("hosts"))
                ]
            return self._publishers_by_host

    def _get_layer(self) -> RedisPubSubLoopLayer:
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = BoundedLoopLayer(*self._args, **self._kwargs, channel_layer=self)
            self._layers[loop] = layer
            _wrap_close(self, loop)
        return layer


class Publisher:
    """PUBLISH over one connection of its own without waiting for each reply: a reply
    costs the sender a sleep and a wake-up, more than the send. Replies are read when
    they are there by the next send, and waited for once MAX_UNREAD_REPLIES are unread
    (so a Redis that stops answering still fails a send, after the socket timeout).
    Any failure drops the connection; the next send opens a new one."""

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self._pool = pool
        self._connection: AbstractConnection | None = None
        self._pid = 0
        self._unread = 0
        self._lock = threading.Lock()
        self._failures = 0

    def publish(self, channel: str, data: bytes) -> None:
        failures_before = self._failures
        with self._lock:
            if self._failures != failures_before:
                # The send this one waited behind has just failed: Redis is down or silent.
                # Threads of one process share this publisher; each trying in turn would
                # wait out a timeout of its own, one after the other (every slot of a
                # threads worker stalled for all of them together).
                raise redis.ConnectionError("Redis failed a publish this one waited behind")
            try:
                connection = self._connected()
                self._read_replies(connection)
                # No health-check PING: its answer would be read as a PUBLISH's.
                connection.send_command("PUBLISH", channel, data, check_health=False)
                self._unread += 1
            except BaseException:
                self._failures += 1
                self._drop()
                raise

    def _connected(self) -> AbstractConnection:
        if self._connection is None or self._pid != os.getpid():
            # A forked child must not write into its parent's socket.
            self._connection = self._pool.make_connection()
            self._pid = os.getpid()
            self._unread = 0
        return self._connection

    def _read_replies(self, connection: AbstractConnection) -> None:
        while self._unread and (
            self._unread >= MAX_UNREAD_REPLIES or connection.can_read(timeout=0)
        ):
            connection.read_response()
            self._unread -= 1

    def _drop(self) -> None:
        if self._connection is not None and self._pid == os.getpid():
            self._connection.disconnect()
        self._connection = None


def _publisher_pool(host: dict[str, Any]) -> redis.ConnectionPool:
    """Where a Publisher gets its connection: the host's options, our timeout, no retry."""
    options = {name: value for name, value in host.items() if name != "address"}
    options.update(socket_timeout=BLOCKING_PUBLISH_TIMEOUT_S, retry=Retry(NoBackoff(), 0))
    return redis.ConnectionPool.from_url(host["address"], **options)
