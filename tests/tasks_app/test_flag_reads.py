"""A worker process's stop flags are read from the real Redis by one thread for all its
attempts; an attempt only looks at the latest reading, never waiting on Redis."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence

import pytest
import redis
from django.conf import settings
from redis.exceptions import ConnectionError as RedisConnectionError

from tasks_app.services import cancellation
from tasks_app.services.draining import drain_key
from tasks_app.services.flag_reads import FlagWatcher
from tests.live import wait_until


class RecordingRedis:
    """The real Redis, with each MGET sent to it written down; `failing` makes it fail."""

    def __init__(self) -> None:
        self.client = redis.Redis.from_url(settings.REDIS_URL)
        self.reads: list[list[str]] = []
        self.failing: Exception | None = None

    def mget(self, keys: list[str]) -> Sequence[bytes | None]:
        self.reads.append(list(keys))
        if self.failing is not None:
            raise self.failing
        return self.client.mget(keys)


def cancel_key() -> str:
    return f"agentsite:cancel:test-{uuid.uuid4().hex}"


@pytest.fixture
def store() -> RecordingRedis:
    return RecordingRedis()


def test_one_read_serves_every_attempt_and_each_sees_its_own_flag(store):
    watcher = FlagWatcher(store.mget, poll_s=0.05)
    drain = drain_key(f"w-{uuid.uuid4().hex}@test")
    keys = [cancel_key() for _ in range(25)]
    cancelled = set(keys[::2])
    registered = threading.Barrier(len(keys) + 1)
    seen: dict[str, list[bytes | None]] = {}

    def attempt(key: str) -> None:
        watcher.latest([key, drain])
        registered.wait()
        seen[key] = (
            wait_until(
                lambda: (values := watcher.latest([key, drain])) and values[0] and values,
                10,
                f"{key} seen cancelled",
            )
            if key in cancelled
            else wait_until(lambda: watcher.latest([key, drain]), 10, f"a reading of {key}")
        )

    threads = [threading.Thread(target=attempt, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    registered.wait()
    reads_before_flags = len(store.reads)
    try:
        for key in cancelled:
            store.client.set(key, "1", ex=60)
        for thread in threads:
            thread.join(timeout=30)
    finally:
        store.client.delete(*cancelled)
    assert seen == {key: [b"1" if key in cancelled else None, None] for key in keys}
    # Once all had asked, each read was one MGET of every attempt's keys.
    later = store.reads[reads_before_flags:]
    assert later and all(sorted(read) == sorted([*keys, drain]) for read in later)


def test_an_attempt_that_stops_asking_is_no_longer_read_and_then_nothing_is(store):
    watcher = FlagWatcher(store.mget, poll_s=0.02, forget_s=0.2)
    ended, running = cancel_key(), cancel_key()
    wait_until(lambda: watcher.latest([ended]), 10, "a first reading")
    wait_until(
        lambda: watcher.latest([running]) and store.reads[-1] == [running],
        10,
        "reads of the running attempt's key alone",
    )

    def reads_stopped() -> bool:
        before = len(store.reads)
        threading.Event().wait(0.2)  # ten poll periods
        return len(store.reads) == before

    # Nobody asks any more: the thread idles (it would read every 20 ms otherwise).
    wait_until(reads_stopped, 10, "the reads to stop")
    # Asked again, the idle thread wakes and reads it.
    wait_until(lambda: watcher.latest([ended]) == [None], 10, "a reading after the idle time")


def test_while_reads_fail_the_last_reading_holds_until_stale_then_reads_resume(store):
    watcher = FlagWatcher(store.mget, poll_s=0.02, backoff_s=0.05, stale_s=0.5)
    key = cancel_key()
    store.client.set(key, "1", ex=60)
    try:
        assert wait_until(lambda: watcher.latest([key]), 10, "a first reading") == [b"1"]
        for failure in (RedisConnectionError("Redis went away"), ValueError("a bad reply")):
            store.failing = failure
            failed_reads = len(store.reads)
            wait_until(lambda: watcher.latest([key]) is None, 10, "the reading gone stale")
            assert len(store.reads) > failed_reads  # it kept trying, after its pauses
            store.failing = None
            assert wait_until(lambda: watcher.latest([key]), 10, "a reading again") == [b"1"]
    finally:
        store.client.delete(key)


def test_the_process_reading_carries_a_cancel_and_a_drain_deadline():
    worker = f"w-{uuid.uuid4().hex}@test"
    task_id = 10**9 + uuid.uuid4().int % 10**6
    client = redis.Redis.from_url(settings.REDIS_URL)
    assert wait_until(lambda: cancellation.read_flags(task_id, worker), 10, "a reading") == (
        False,
        None,
    )
    cancellation.request_stop(task_id)
    client.set(drain_key(worker), "12345.0", ex=60)
    try:
        wait_until(
            lambda: cancellation.read_flags(task_id, worker) == (True, b"12345.0"),
            10,
            "the cancel and the deadline read",
        )
    finally:
        cancellation.clear(task_id)
        client.delete(drain_key(worker))


def test_a_subscriber_hears_of_its_keys_once_each_is_set_without_asking(store):
    watcher = FlagWatcher(store.mget, poll_s=0.02, forget_s=0.2)
    cancel, drain = cancel_key(), cancel_key()
    heard: list[float] = []
    unsubscribe = watcher.subscribe([cancel, drain], lambda: heard.append(time.monotonic()))
    try:
        wait_until(lambda: store.reads and store.reads[-1] == [cancel, drain], 10, "reads")
        threading.Event().wait(0.2)  # readings of unset keys, nobody asking: no call
        assert heard == []
        store.client.set(cancel, "1", ex=60)
        wait_until(lambda: heard, 10, "the call for the cancel")
        threading.Event().wait(0.2)  # the same value in later readings: no new call
        assert len(heard) == 1
        store.client.set(drain, "12345.0", ex=60)
        wait_until(lambda: len(heard) == 2, 10, "the call for the drain deadline")
    finally:
        unsubscribe()
        store.client.delete(cancel, drain)
    # Unsubscribed and never asked: its keys are no longer read.
    wait_until(lambda: reads_stopped(store), 10, "the reads to stop")


def reads_stopped(store: RecordingRedis) -> bool:
    before = len(store.reads)
    threading.Event().wait(0.2)  # ten poll periods
    return len(store.reads) == before
