"""Waiting for a pub/sub subscription to be live, in tests that publish right after."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def subscribed(sender: Any, receiver: Any, group: str, *channels: str) -> None:
    """Return once `channels` hear `group`: SUBSCRIBE is sent, not acknowledged, so a
    message published at once can reach Redis first and go to nobody. Probes until one
    reaches every channel in the same round, leaving their queues empty."""
    for probe in range(50):
        await sender.group_send(group, {"type": "probe", "n": probe})
        heard = 0
        for channel in channels:
            with contextlib.suppress(TimeoutError):
                while (await asyncio.wait_for(receiver.receive(channel), 0.2))["n"] != probe:
                    pass
                heard += 1
        if heard == len(channels):
            return
    raise AssertionError(f"{channels} never heard {group}")
