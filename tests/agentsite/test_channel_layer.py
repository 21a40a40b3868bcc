"""The bounded pub/sub channel layer against the real Redis: delivery, the bound, and
nothing kept for a channel that is gone."""

from __future__ import annotations

import asyncio
import uuid

from django.conf import settings

from agentsite.channel_layer import BoundedPubSubChannelLayer, DropOldestQueue


def layer(capacity: int) -> BoundedPubSubChannelLayer:
    prefix = f"test-layer-{uuid.uuid4().hex[:8]}"
    return BoundedPubSubChannelLayer(hosts=[settings.REDIS_URL], prefix=prefix, capacity=capacity)


async def until(condition, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


def test_a_full_queue_drops_its_oldest_items():
    queue = DropOldestQueue(capacity=2)
    for item in range(5):
        queue.put_nowait(item)
    assert [queue.get_nowait(), queue.get_nowait()] == [3, 4]
    assert queue.dropped == 3 and queue.empty()


def test_group_messages_reach_members_and_a_slow_member_keeps_the_newest():
    async def scenario() -> tuple[list[int], list[int], int]:
        bounded = layer(capacity=3)
        fast, slow = await bounded.new_channel(), await bounded.new_channel()
        await bounded.group_add("task.1", fast)
        await bounded.group_add("task.1", slow)
        got_fast = []
        for n in range(6):
            await bounded.group_send("task.1", {"type": "task.events", "n": n})
            got_fast.append((await asyncio.wait_for(bounded.receive(fast), 5))["n"])
        queue = bounded._get_layer().channels[slow]
        await until(lambda: queue.dropped == 3)
        got_slow = [(await bounded.receive(slow))["n"] for _ in range(3)]
        await bounded.flush()
        return got_fast, got_slow, queue.dropped

    fast, slow, dropped = asyncio.run(scenario())
    assert fast == [0, 1, 2, 3, 4, 5]
    assert slow == [3, 4, 5] and dropped == 3


def test_a_consumer_that_left_leaves_no_queue_behind():
    async def scenario() -> tuple[bool, bool]:
        bounded = layer(capacity=10)
        staying, leaving = await bounded.new_channel(), await bounded.new_channel()
        await bounded.group_add("task.2", staying)
        await bounded.group_add("task.2", leaving)
        waiting = asyncio.ensure_future(bounded.receive(leaving))
        await asyncio.sleep(0.05)
        waiting.cancel()  # the socket closed: Channels cancels its receive
        await asyncio.gather(waiting, return_exceptions=True)
        await bounded.group_send("task.2", {"type": "task.events", "n": 1})
        assert (await asyncio.wait_for(bounded.receive(staying), 5))["n"] == 1
        channels = bounded._get_layer().channels
        kept = leaving in channels, staying in channels
        await bounded.flush()
        return kept

    leaving_kept, staying_kept = asyncio.run(scenario())
    assert not leaving_kept and staying_kept
