"""Pushes from sync code (workers, views) through the real Redis channel layer."""

from __future__ import annotations

import asyncio
from typing import Any

from channels.layers import get_channel_layer

from tasks_app.services import broadcast
from tests.channel_layers import subscribed
from tests.concurrency import in_forked_child

RECEIVE_TIMEOUT_S = 15.0


async def _join(group: str) -> str:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    return channel


async def _receive(channel: str) -> dict[str, Any]:
    return await asyncio.wait_for(get_channel_layer().receive(channel), RECEIVE_TIMEOUT_S)


def test_pushes_from_sync_code_arrive_in_order_on_one_loop():
    async def scenario() -> list[int]:
        # Subscribed for the whole exchange, as a consumer is (a pub/sub layer keeps
        # nothing for a channel while nobody listens).
        channel = await _join("test.push.order")
        await subscribed(get_channel_layer(), get_channel_layer(), "test.push.order", channel)
        for number in range(3):
            message = {"type": "task.events", "number": number}
            await asyncio.to_thread(broadcast._group_send, "test.push.order", message)
        return [(await _receive(channel))["number"] for _ in range(3)]

    assert asyncio.run(scenario()) == [0, 1, 2]


def push_from_a_forked_child() -> None:
    def push() -> bytes:
        broadcast._group_send("test.push.fork", {"type": "task.events", "from": "child"})
        return b""

    in_forked_child(push)


def test_a_push_from_a_forked_pool_process_arrives():
    # The parent's loop thread exists before the fork, as in a worker whose main process
    # pushed something; the child (a Celery pool process) must not wait on that thread.
    broadcast._group_send("test.push.warm-up", {"type": "task.events"})

    async def scenario() -> dict[str, Any]:
        channel = await _join("test.push.fork")
        await subscribed(get_channel_layer(), get_channel_layer(), "test.push.fork", channel)
        await asyncio.to_thread(push_from_a_forked_child)
        return await _receive(channel)

    assert asyncio.run(scenario())["from"] == "child"
