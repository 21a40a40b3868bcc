"""The stop flags of every attempt a worker process runs, read from Redis in one round
trip.

Each running attempt asks for its cancel flag and its worker's drain deadline every
FLAG_POLL_S; a threads worker runs dozens of attempts, and one MGET per attempt per poll
was a third of its supervision loop's CPU. A reading serves every attempt that asks
within FRESH_S after it, so a process sends about FLAG_POLL_S / FRESH_S reads per poll
period whatever its number of attempts, and a flag set in Redis is seen at most
FLAG_POLL_S + FRESH_S later (a prefork process, with one attempt, reads as before).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

FRESH_S = 0.1
# A key nobody asked for this long belongs to an attempt that ended: no longer read.
FORGET_S = 1.0

MultiGet = Callable[[list[str]], Sequence[bytes | None]]


@dataclass
class SharedFlagReads:
    """`values(keys, mget)`: the keys' values from a reading at most FRESH_S old, made
    with `mget` for every key asked for lately when there is none. One reading at a time:
    an attempt that finds one under way waits for it rather than sending its own."""

    fresh_s: float = FRESH_S
    forget_s: float = FORGET_S
    clock: Callable[[], float] = time.monotonic
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _asked: dict[str, float] = field(default_factory=dict)  # key: when last asked for
    _read_at: float = -math.inf  # when the last reading was sent (what it shows is newer)
    _read: dict[str, bytes | None] = field(default_factory=dict)

    def values(self, keys: Sequence[str], mget: MultiGet) -> list[bytes | None]:
        with self._lock:
            now = self.clock()
            for key in keys:
                self._asked[key] = now
            if now - self._read_at >= self.fresh_s or not all(k in self._read for k in keys):
                self._refresh(now, mget)
            return [self._read[key] for key in keys]

    def _refresh(self, now: float, mget: MultiGet) -> None:
        forgotten = now - self.forget_s
        self._asked = {key: at for key, at in self._asked.items() if at > forgotten}
        wanted = list(self._asked)
        # A failed read keeps nothing: every attempt asking next tries (and fails) itself.
        self._read, self._read_at = {}, -math.inf
        self._read = dict(zip(wanted, mget(wanted), strict=True))
        self._read_at = now


PROCESS_FLAG_READS = SharedFlagReads()
