"""This machine's RabbitMQ, for the tests that run a worker on it."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
# Outside any checkout: every test run on this machine must see the same lock.
LOCK_PATH = Path("/tmp/agentsite-tests-rabbitmq.lock")


@contextlib.contextmanager
def rabbitmq_to_ourselves() -> Iterator[None]:
    """Hold the machine's RabbitMQ for this test run alone.

    Its default vhost is the machine's, and the queues carry the application's fixed
    names: a second test run on the same machine (another CI job, a developer's run
    beside it) would have its worker take this run's wake-ups, and this run's task
    would wait for ever. So the runs take turns, by a lock on a file.
    """
    with LOCK_PATH.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
