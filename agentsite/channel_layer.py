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
from typing import Any

from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer, _wrap_close

DEFAULT_CAPACITY = 5000


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


class BoundedLoopLayer(RedisPubSubLoopLayer):
    def __init__(self, *args: Any, capacity: int = DEFAULT_CAPACITY, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.capacity = capacity

    async def _subscribe_to_channel(self, channel: str) -> None:
        self.channels[channel] = DropOldestQueue(self.capacity)
        await self._get_shard(channel).subscribe(channel)


class BoundedPubSubChannelLayer(RedisPubSubChannelLayer):
    """RedisPubSubChannelLayer whose per-loop layers bound each channel's queue
    (`capacity` in CONFIG, messages)."""

    def _get_layer(self) -> RedisPubSubLoopLayer:
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = BoundedLoopLayer(*self._args, **self._kwargs, channel_layer=self)
            self._layers[loop] = layer
            _wrap_close(self, loop)
        return layer
