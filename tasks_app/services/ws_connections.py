"""The per-user cap on open WebSockets, counted in Redis across every web process.

Each open socket holds a slot: its channel name in a per-user sorted set, scored by
when the slot expires. Sockets renew their slot on every heartbeat, and expired members
are dropped before counting, so a web process that dies without closing its sockets
gives their slots back within a few heartbeats instead of leaking them forever.
"""

from __future__ import annotations

import asyncio
import time
import weakref

import redis.asyncio as aioredis
from django.conf import settings

# Atomic, so two sockets racing for the last slot cannot both get it.
_ACQUIRE_LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if not redis.call('ZSCORE', KEYS[1], ARGV[3])
   and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""

# Redis asyncio clients belong to the event loop that created them.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = (
    weakref.WeakKeyDictionary()
)


def _client() -> aioredis.Redis:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = aioredis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=5
        )
        _clients[loop] = client
    return client


def slot_key(user_id: int) -> str:
    return f"agentsite:wsconn:{user_id}"


def slot_ttl_s() -> float:
    """Three missed heartbeats, and never less than 30 s (a slow event loop is not death)."""
    return max(3.0 * settings.AGENT_WS_HEARTBEAT_S, 30.0)


async def acquire_slot(*, user_id: int, channel_name: str) -> bool:
    """Take a slot for this socket; False when the user already has the maximum open."""
    now = time.time()
    ttl = slot_ttl_s()
    won = await _client().eval(
        _ACQUIRE_LUA,
        1,
        slot_key(user_id),
        now,
        now + ttl,
        channel_name,
        settings.AGENT_MAX_WS_PER_USER,
        int(ttl * 1000),
    )
    return bool(won)


async def renew_slot(*, user_id: int, channel_name: str) -> None:
    # Re-adding a slot that expired during a long stall keeps the count honest.
    ttl = slot_ttl_s()
    key = slot_key(user_id)
    async with _client().pipeline(transaction=True) as pipe:
        pipe.zadd(key, {channel_name: time.time() + ttl})
        pipe.pexpire(key, int(ttl * 1000))
        await pipe.execute()


async def release_slot(*, user_id: int, channel_name: str) -> None:
    await _client().zrem(slot_key(user_id), channel_name)


async def open_slots(*, user_id: int) -> int:
    """Live slots of the user (expired ones not counted); for metrics and tests."""
    return int(await _client().zcount(slot_key(user_id), time.time(), "+inf"))
