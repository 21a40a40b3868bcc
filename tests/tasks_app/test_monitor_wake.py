"""A running attempt looks at its flags about once a second, but a cancel or a drain
deadline newly set wakes it, and its next poll acts on it at once."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis
from django.conf import settings

from tasks_app.models import Task, TaskStatus
from tasks_app.services import cancellation
from tasks_app.services import monitor as monitor_module
from tasks_app.services.draining import drain_key
from tasks_app.services.monitor import AttemptMonitor, StopCause
from tests.factories import make_task
from tests.live import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def monitor(user) -> AttemptMonitor:
    worker = f"w-{uuid.uuid4().hex}@test"
    task: Task = make_task(user, status=TaskStatus.RUNNING, attempts=1, worker=worker)
    return AttemptMonitor(task=task, attempt=1)


def test_a_cancel_wakes_the_attempt_and_its_next_poll_stops_it(monitor):
    woken = threading.Event()
    stop_watching = monitor.watch_flags(woken.set)
    try:
        wait_until(lambda: monitor.poll() is None and not woken.is_set(), 10, "a first look")
        monitor.next_flag_check = time.monotonic() + 3600  # no look of its own from now
        cancellation.request_stop(monitor.task.pk)
        assert woken.wait(10)
        assert monitor.poll() is StopCause.CANCEL
    finally:
        stop_watching()
        cancellation.clear(monitor.task.pk)


def test_a_drain_deadline_wakes_the_attempt_which_looks_again_when_it_passes(monitor, monkeypatch):
    monkeypatch.setattr(monitor_module, "FLAG_POLL_S", 3600.0)  # no look of its own
    monitor.next_heartbeat = time.monotonic() + 3600  # nor a heartbeat
    client = redis.Redis.from_url(settings.REDIS_URL)
    woken = threading.Event()
    stop_watching = monitor.watch_flags(woken.set)
    key = drain_key(monitor.task.worker)
    try:
        wait_until(lambda: monitor.poll() is None and not woken.is_set(), 10, "a first look")
        deadline = time.time() + 3
        client.set(key, repr(deadline), ex=60)
        assert woken.wait(10)
        assert monitor.poll() is None  # woken before the deadline: not yet
        # The next look is when the deadline passes.
        due_in = monitor.next_poll_at() - time.monotonic()
        assert abs(due_in - (deadline - time.time())) < 0.1
        time.sleep(max(0.0, due_in))
        assert monitor.poll() is StopCause.DRAIN
    finally:
        stop_watching()
        client.delete(key)
