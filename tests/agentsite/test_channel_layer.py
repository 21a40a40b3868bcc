"""The bounded pub/sub channel layer against the real Redis: delivery, the bound, and
nothing kept for a channel that is gone."""

from __future__ import annotations

import asyncio
import gc
import socket
import sys
import threading
import uuid

import channels_redis.pubsub
import pytest
import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from agentsite import channel_layer
from agentsite.channel_layer import (
    MAX_UNREAD_REPLIES,
    BoundedPubSubChannelLayer,
    DropOldestQueue,
    Publisher,
)
from tests.channel_layers import subscribed
from tests.concurrency import in_forked_child
from tests.fakes.tcp_proxy import ProxyMode, TcpProxy
from tests.live import wait_until
from tests.tasks_app.engine.outages import redis_address


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
        await subscribed(bounded, bounded, "task.1", fast, slow)
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
        await subscribed(bounded, bounded, "task.2", staying, leaving)
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


def test_a_subscription_is_heard_at_once_also_after_everything_was_unsubscribed(monkeypatch):
    """channels_redis' receive loop slept 100 ms at a time while nothing was subscribed,
    so a process's first socket, and the first after all of its sockets had gone, heard
    its first messages up to that much late. Here that sleep never ends: the messages
    must come all the same."""
    real_sleep = asyncio.sleep

    async def idle_poll_never_ends(delay: float, *args, **kwargs):
        if delay == 0.1:  # the library's poll while nothing is subscribed
            await asyncio.Event().wait()
        return await real_sleep(delay, *args, **kwargs)

    monkeypatch.setattr(channels_redis.pubsub.asyncio, "sleep", idle_poll_never_ends)

    async def scenario() -> bool:
        bounded = layer(capacity=10)
        first = await bounded.new_channel()
        await bounded.group_add("task.9", first)
        await subscribed(bounded, bounded, "task.9", first)
        # Its socket closes: the process has nothing subscribed any more.
        leaving = asyncio.ensure_future(bounded.receive(first))
        await real_sleep(0.05)
        leaving.cancel()
        await asyncio.gather(leaving, return_exceptions=True)
        await bounded.group_discard("task.9", first)
        [shard] = bounded._get_layer()._shards
        await until(lambda: not shard._pubsub.subscribed)
        second = await bounded.new_channel()
        await bounded.group_add("task.9", second)
        await subscribed(bounded, bounded, "task.9", second)
        await bounded.group_send("task.9", {"type": "task.events", "n": 1})
        heard = (await asyncio.wait_for(bounded.receive(second), 5))["n"] == 1
        await bounded.flush()
        return heard

    assert asyncio.run(scenario())


def test_a_blocking_send_from_sync_code_reaches_the_group_in_order():
    """What workers push with (no event loop of their own): the same group channel and
    serialization as group_send, so consumers cannot tell the two apart."""

    async def scenario() -> list[dict]:
        bounded = layer(capacity=100)
        member = await bounded.new_channel()
        await bounded.group_add("task.4", member)
        await subscribed(bounded, bounded, "task.4", member)

        def from_a_worker_thread() -> None:
            for n in range(20):
                bounded.group_send_blocking("task.4", {"type": "task.events", "n": n})

        await asyncio.to_thread(from_a_worker_thread)
        got = [await asyncio.wait_for(bounded.receive(member), 5) for _ in range(20)]
        await bounded.flush()
        return got

    got = asyncio.run(scenario())
    assert got == [{"type": "task.events", "n": n} for n in range(20)]


def test_a_blocking_sender_reads_its_replies_as_they_come():
    """It does not wait for each PUBLISH's answer, but neither does it let them pile up:
    a long run of sends reaches the group whole and in order, with few answers unread."""
    count = 3 * MAX_UNREAD_REPLIES

    async def scenario() -> tuple[list[int], int]:
        bounded = layer(capacity=count + 10)
        member = await bounded.new_channel()
        await bounded.group_add("task.5", member)
        await subscribed(bounded, bounded, "task.5", member)

        def from_a_worker_thread() -> None:
            for n in range(count):
                bounded.group_send_blocking("task.5", {"type": "task.events", "n": n})

        await asyncio.to_thread(from_a_worker_thread)
        got = [(await asyncio.wait_for(bounded.receive(member), 5))["n"] for _ in range(count)]
        unread = bounded._publishers()[0]._unread
        await bounded.flush()
        return got, unread

    got, unread = asyncio.run(scenario())
    assert got == list(range(count))
    assert unread <= MAX_UNREAD_REPLIES


def test_a_blocking_send_fails_once_redis_stops_answering_then_reconnects(monkeypatch):
    """Sends are not each answered, so a silent Redis is noticed when the unread answers
    reach the bound and the socket timeout passes; the send after that reconnects."""
    monkeypatch.setattr(channel_layer, "BLOCKING_PUBLISH_TIMEOUT_S", 0.5)
    host, port = redis_address(settings.REDIS_URL)
    with TcpProxy(host, port, name="publish-proxy") as proxy:
        prefix = f"test-layer-{uuid.uuid4().hex[:8]}"
        sender = BoundedPubSubChannelLayer(hosts=[proxy.url(settings.REDIS_URL)], prefix=prefix)
        sender.group_send_blocking("task.6", {"type": "task.events", "n": 0})
        proxy.set_mode(ProxyMode.BLACKHOLE)
        with pytest.raises(RedisError):
            for n in range(2 * MAX_UNREAD_REPLIES):
                sender.group_send_blocking("task.6", {"type": "task.events", "n": n})
        proxy.set_mode(ProxyMode.PASS)

        async def heard_again() -> bool:
            receiver = BoundedPubSubChannelLayer(hosts=[settings.REDIS_URL], prefix=prefix)
            member = await receiver.new_channel()
            await receiver.group_add("task.6", member)
            await subscribed(receiver, receiver, "task.6", member)
            await asyncio.to_thread(
                sender.group_send_blocking, "task.6", {"type": "task.events", "n": 99}
            )
            got = await asyncio.wait_for(receiver.receive(member), 5)
            await receiver.flush()
            return got["n"] == 99

        assert asyncio.run(heard_again())


def test_a_forked_child_publishes_on_a_connection_of_its_own():
    """A prefork pool process must not write into its parent's socket: both would
    interleave commands and read each other's answers."""
    prefix = f"test-layer-{uuid.uuid4().hex[:8]}"
    sender = BoundedPubSubChannelLayer(hosts=[settings.REDIS_URL], prefix=prefix)
    sender.group_send_blocking("task.7", {"type": "task.events", "n": 0})
    parent_connection = sender._publishers()[0]._connection

    def whose_connection() -> bytes:
        nonlocal parent_connection
        sender.group_send_blocking("task.7", {"type": "task.events", "n": 1})
        own = sender._publishers()[0]._connection is not parent_connection
        del parent_connection  # what a pool process does with it: drop it
        gc.collect()
        return b"own" if own else b"shared"

    assert in_forked_child(whose_connection) == b"own"
    # The parent's connection is untouched and still answers.
    for n in range(2 * MAX_UNREAD_REPLIES):
        sender.group_send_blocking("task.7", {"type": "task.events", "n": n})
    assert sender._publishers()[0]._connection is parent_connection


def waiting_in_publish(thread: threading.Thread) -> bool:
    """Whether `thread`'s innermost Python frame is Publisher.publish itself: the only
    thing it blocks on there is the publisher's lock."""
    frame = sys._current_frames().get(thread.ident or 0)
    return frame is not None and frame.f_code is Publisher.publish.__code__


def test_threads_waiting_behind_a_failed_publish_fail_with_it_instead_of_each_waiting():
    # A Redis gone silent: it takes the connection and never answers.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        pool = redis.ConnectionPool(
            host="127.0.0.1",
            port=silent.getsockname()[1],
            socket_timeout=1,
            retry=Retry(NoBackoff(), 0),
        )
        publisher = Publisher(pool)
        errors: dict[str, str] = {}

        def send(name: str) -> None:
            try:
                publisher.publish("task.8", b"x")
            except RedisError as exc:
                errors[name] = str(exc)

        first = threading.Thread(target=send, args=("first",))
        first.start()
        accepted, _ = silent.accept()  # it waits for the answer to its connection's set-up
        behind = [threading.Thread(target=send, args=(f"behind-{i}",)) for i in range(4)]
        for thread in behind:
            thread.start()
        wait_until(lambda: all(waiting_in_publish(t) for t in behind), 10, "four waiting")
        for thread in (first, *behind):
            thread.join(30)
        silent.setblocking(False)
        with pytest.raises(BlockingIOError):
            silent.accept()  # none of the four opened a connection of its own
        accepted.close()
        pool.disconnect()
    assert "Timeout" in errors["first"]
    assert all("waited behind" in errors[f"behind-{i}"] for i in range(4)), errors


@pytest.mark.parametrize("shape", [ProxyMode.REFUSE, ProxyMode.BLACKHOLE])
def test_a_subscriber_hears_its_groups_again_after_redis_was_away(shape):
    host, port = redis_address(settings.REDIS_URL)
    with TcpProxy(host, port, name="layer-proxy") as proxy:
        prefix = f"test-layer-{uuid.uuid4().hex[:8]}"
        through_proxy = BoundedPubSubChannelLayer(hosts=[proxy.url(settings.REDIS_URL)],
                                                  prefix=prefix)  # fmt: skip
        direct = BoundedPubSubChannelLayer(hosts=[settings.REDIS_URL], prefix=prefix)

        async def heard(channel: str, n: int) -> bool:
            await direct.group_send("task.3", {"type": "task.events", "n": n})
            try:
                return (await asyncio.wait_for(through_proxy.receive(channel), 0.5))["n"] == n
            except TimeoutError:
                return False

        async def scenario() -> tuple[bool, int]:
            channel = await through_proxy.new_channel()
            await through_proxy.group_add("task.3", channel)
            await subscribed(direct, through_proxy, "task.3", channel)
            before = await heard(channel, 0)
            await asyncio.to_thread(proxy.set_mode, shape)
            await asyncio.sleep(3)  # the outage itself
            await asyncio.to_thread(proxy.set_mode, ProxyMode.PASS)
            tries = 1
            while not await heard(channel, tries) and tries < 40:
                tries += 1
            await through_proxy.flush()
            await direct.flush()
            return before, tries

        before, tries = asyncio.run(scenario())
    assert before
    assert tries < 40, "the subscriber never heard its group again"
