"""The stop flags of every attempt a worker process runs, read from Redis by a thread of
the process's own, so that no attempt's supervision loop waits on Redis.

Each running attempt looks at its cancel flag and its worker's drain deadline about
once a second. Read in the loop, each look was a round trip: with fifty runs ending at
once Redis answered in 100-250 ms, while the CLI's next lines waited in the pipe; and a
threads worker sent one read per attempt. Now the loop looks at the latest reading in
memory, and one thread per process reads every key asked for lately in one MGET every
POLL_S (at once when an attempt asks for keys no reading holds yet). A flag set in
Redis is in a reading at most POLL_S later.

An attempt also subscribes to its keys: the reading that first shows one of them set
calls it back, so the attempt acts on a cancel or a drain at once rather than at its
next look.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog
from redis.exceptions import RedisError

from tasks_app.services.redis_store import get_quick_redis

log = structlog.get_logger(__name__)

POLL_S = 0.2
# How long the reads pause after Redis failed to answer one.
BACKOFF_S = 5.0
# A key nobody asked for this long belongs to an attempt that ended: no longer read.
FORGET_S = 1.0
# A reading this old (Redis has not answered since) shows nothing any more.
STALE_S = 2.0

MultiGet = Callable[[list[str]], Sequence[bytes | None]]
_subscription_ids = itertools.count()


@dataclass
class _Subscriber:
    keys: list[str]
    on_set: Callable[[], None]
    seen: tuple[bytes | None, ...] | None = None  # the keys' values in the last reading

    def changed_to_set(self, values: dict[str, bytes | None]) -> bool:
        """Whether this reading shows one of the keys set with a value the last one
        did not show (a cleared flag is nothing to act on)."""
        now = tuple(values.get(key) for key in self.keys)
        before, self.seen = self.seen, now
        return now != before and any(value is not None for value in now)


@dataclass
class FlagWatcher:
    """`latest(keys)`: the keys' values in the latest reading, made by the watcher's
    thread with `read`; None while no reading holds them (just asked for, or Redis
    unreachable for STALE_S)."""

    read: MultiGet
    poll_s: float = POLL_S
    backoff_s: float = BACKOFF_S
    forget_s: float = FORGET_S
    stale_s: float = STALE_S
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _wake: threading.Event = field(default_factory=threading.Event, repr=False)
    _asked: dict[str, float] = field(default_factory=dict)  # key: when last asked for
    _values: dict[str, bytes | None] = field(default_factory=dict)
    _subscribers: dict[int, _Subscriber] = field(default_factory=dict)
    _read_at: float = -math.inf  # when the latest reading was sent
    _thread_pid: int | None = None  # the process whose thread reads (a fork needs its own)

    def latest(self, keys: Sequence[str]) -> list[bytes | None] | None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._asked[key] = now
            if now - self._read_at < self.stale_s and all(k in self._values for k in keys):
                return [self._values[key] for key in keys]
            self._start_reading()
        self._wake.set()
        return None

    def subscribe(self, keys: Sequence[str], on_set: Callable[[], None]) -> Callable[[], None]:
        """Call `on_set` (from the watcher's thread) after each reading that shows one of
        `keys` newly set; the keys are read while subscribed, asked for or not. Returns
        the function that ends the subscription."""
        subscription = next(_subscription_ids)
        with self._lock:
            self._subscribers[subscription] = _Subscriber(list(keys), on_set)
            self._start_reading()
        self._wake.set()

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers.pop(subscription, None)

        return unsubscribe

    def forget_parents_thread(self) -> None:
        """In a forked child: the parent's lock may have been held at the fork, and its
        reading thread is not here."""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread_pid = None
        self._subscribers = {}

    def _start_reading(self) -> None:
        if self._thread_pid == os.getpid():
            return
        self._thread_pid = os.getpid()
        threading.Thread(target=self._read_forever, name="flag-watcher", daemon=True).start()

    def _read_forever(self) -> None:
        while True:
            with self._lock:
                forgotten = time.monotonic() - self.forget_s
                self._asked = {key: at for key, at in self._asked.items() if at > forgotten}
                subscribed = (k for s in self._subscribers.values() for k in s.keys)
                wanted = list(dict.fromkeys([*self._asked, *subscribed]))
            if wanted:
                self._read_once(wanted)
            # Idle (no attempt asks) until one does; otherwise every poll_s.
            self._wake.wait(self.poll_s if wanted else None)
            self._wake.clear()

    def _read_once(self, wanted: list[str]) -> None:
        sent_at = time.monotonic()
        try:
            values = self.read(wanted)
        except RedisError as exc:
            # The database heartbeat still carries a cancel; a drain waits for Redis.
            log.warning("flags_unreadable", error=str(exc))
            time.sleep(self.backoff_s)
            return
        except Exception:  # noqa: BLE001 - the only reader of the process must not die
            log.exception("flags_read_failed")
            time.sleep(self.backoff_s)
            return
        with self._lock:
            self._values = dict(zip(wanted, values, strict=True))
            self._read_at = sent_at
            changed = [s for s in self._subscribers.values() if s.changed_to_set(self._values)]
        for subscriber in changed:
            try:
                subscriber.on_set()
            except Exception:  # noqa: BLE001 - one attempt's callback must not stop the reads
                log.exception("flag_subscriber_failed")


def _read_quick_redis(keys: list[str]) -> Sequence[bytes | None]:
    return get_quick_redis().mget(keys)


PROCESS_FLAGS = FlagWatcher(_read_quick_redis)
os.register_at_fork(after_in_child=PROCESS_FLAGS.forget_parents_thread)
