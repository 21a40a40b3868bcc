"""Attempts started together do not keep their periodic database work in step: each
holds its text blocks and beats its heartbeat on a phase of its own."""

from __future__ import annotations

import time

from django.test import override_settings

from tasks_app.services.event_writer import HOLD_SHARE_MIN, EventWriter
from tasks_app.services.monitor import AttemptMonitor
from tests.factories import make_task

ATTEMPTS = 40


def spread(values: list[float]) -> float:
    return max(values) - min(values)


def test_attempts_started_together_hold_their_blocks_for_different_times(user):
    task = make_task(user)
    with override_settings(AGENT_STREAM_DELTA_HOLD_MS=2000):
        holds = [EventWriter(task, 1).hold_s for _ in range(ATTEMPTS)]
    # Never longer than the setting, never less than its share, and not all the same.
    assert all(2.0 * HOLD_SHARE_MIN <= hold <= 2.0 for hold in holds)
    assert spread(holds) > 0.1
    with override_settings(AGENT_STREAM_DELTA_HOLD_MS=0):
        assert EventWriter(task, 1).hold_s == 0  # no hold stays no hold


def test_attempts_claimed_together_beat_first_at_different_times(user):
    task = make_task(user)
    with override_settings(AGENT_HEARTBEAT_S=10.0):
        before = time.monotonic()
        firsts = [AttemptMonitor(task=task, attempt=1).next_heartbeat for _ in range(ATTEMPTS)]
        after = time.monotonic()
    # Within a period of the claim (a beat is never later than it was), from half of it.
    assert all(before + 5.0 <= first <= after + 10.0 for first in firsts)
    assert spread(firsts) > 1.0
