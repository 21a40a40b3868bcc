"""One Redis reading of the stop flags serves every attempt of a process that asks
within FRESH_S of it (against the real Redis; the clock is the test's)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence

import pytest
import redis
from django.conf import settings
from redis.exceptions import ConnectionError as RedisConnectionError

from tasks_app.services import cancellation
from tasks_app.services.draining import drain_key
from tasks_app.services.flag_reads import FORGET_S, FRESH_S, SharedFlagReads


class CountingRedis:
    """The real Redis, with the MGETs sent to it written down."""

    def __init__(self) -> None:
        self.client = redis.Redis.from_url(settings.REDIS_URL)
        self.reads: list[list[str]] = []
        self.fail_next = False

    def mget(self, keys: list[str]) -> Sequence[bytes | None]:
        self.reads.append(list(keys))
        if self.fail_next:
            self.fail_next = False
            raise RedisConnectionError("Redis went away")
        return self.client.mget(keys)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def keys() -> tuple[str, str, str]:
    """Two tasks' cancel keys and their worker's drain key, of this test only."""
    worker = f"w-{uuid.uuid4().hex}@test"
    return (
        f"agentsite:cancel:{uuid.uuid4().int % 10**9}",
        f"agentsite:cancel:{uuid.uuid4().int % 10**9}",
        drain_key(worker),
    )


def test_one_reading_serves_every_attempt_asking_within_fresh_s(keys):
    first, second, drain = keys
    store, clock = CountingRedis(), Clock()
    reads = SharedFlagReads(clock=clock)
    store.client.set(second, "1", ex=60)
    try:
        assert reads.values([first, drain], store.mget) == [None, None]
        clock.now += 0.01
        # A key the last reading does not hold is read at once, with the others.
        assert reads.values([second, drain], store.mget) == [b"1", None]
        assert store.reads == [[first, drain], [first, drain, second]]
        store.client.set(first, "1", ex=60)
        clock.now += FRESH_S - 0.02
        for _ in range(25):
            assert reads.values([first, drain], store.mget) == [None, None]  # not yet read
            assert reads.values([second, drain], store.mget) == [b"1", None]
        assert len(store.reads) == 2
        clock.now += 0.02
        assert reads.values([first, drain], store.mget) == [b"1", None]
        assert len(store.reads) == 3
        # An attempt that stopped asking (it ended) is no longer read for.
        clock.now += FORGET_S / 2
        reads.values([second, drain], store.mget)
        clock.now += FORGET_S / 2 + 0.01
        reads.values([second, drain], store.mget)
        assert store.reads[-1] == [drain, second]
    finally:
        store.client.delete(first, second)


def test_a_failed_reading_fails_its_asker_and_the_next_asker_reads_again(keys):
    first, second, drain = keys
    store, clock = CountingRedis(), Clock()
    reads = SharedFlagReads(clock=clock)
    reads.values([first, drain], store.mget)
    clock.now += FRESH_S
    store.fail_next = True
    with pytest.raises(RedisConnectionError):
        reads.values([first, drain], store.mget)
    # Within FRESH_S of the failure: no reading to serve, so it reads, and gets the flag.
    store.client.set(first, "1", ex=60)
    try:
        assert reads.values([first, drain], store.mget) == [b"1", None]
        assert len(store.reads) == 3
    finally:
        store.client.delete(first)


def test_attempts_in_many_threads_each_get_their_own_tasks_flag():
    worker = f"w-{uuid.uuid4().hex}@test"
    client = redis.Redis.from_url(settings.REDIS_URL)
    task_ids = [10**9 + n for n in range(25)]
    cancelled = set(task_ids[::2])
    for task_id in cancelled:
        cancellation.request_stop(task_id)
    client.set(drain_key(worker), "12345.0", ex=60)
    answers: dict[int, tuple[bool, bytes | None]] = {}
    start = threading.Barrier(len(task_ids))

    def attempt(task_id: int) -> None:
        start.wait()
        for _ in range(20):
            answers[task_id] = cancellation.read_flags(task_id, worker)

    threads = [threading.Thread(target=attempt, args=(task_id,)) for task_id in task_ids]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for task_id in cancelled:
            cancellation.clear(task_id)
        client.delete(drain_key(worker))
    assert answers == {task_id: (task_id in cancelled, b"12345.0") for task_id in task_ids}
