"""Watching a running attempt: heartbeat, cancel requests, worker shutdown, lost ownership."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import structlog
from django.conf import settings
from django.utils import timezone

from tasks_app.compiled_sql import update_matching
from tasks_app.models import Task, TaskStatus
from tasks_app.services import cancellation, db_outage, draining

log = structlog.get_logger(__name__)
# Checked this often: the sandbox's limit counters and the Redis flags (as this process
# last read them, see flag_reads); the database only on each heartbeat. A flag newly set
# wakes the attempt at once (watch_flags): this is only the net under it, and each look
# costs a wake-up of an otherwise idle loop (50 idle attempts spent half as much CPU at
# 1 s as at 0.2 s).
FLAG_POLL_S = 1.0


def _first_beat_s() -> float:
    share = random.uniform(0.5, 1.0)  # noqa: S311 - spreading load, not a secret
    return settings.AGENT_HEARTBEAT_S * share


class StopCause(StrEnum):
    CANCEL = "cancel"
    DRAIN = "drain"  # the worker is shutting down and its grace period is over
    LOST = "lost"  # the task is no longer running this attempt
    LIMIT = "limit"  # the agent ran into a sandbox resource limit


@dataclass
class AttemptMonitor:
    task: Task
    attempt: int
    # The sandbox's limit check (cgroup event counters), when the run has a sandbox.
    limit_hit: Callable[[], str | None] | None = None
    next_flag_check: float = 0.0
    # Set from the flag reader's thread when one of this attempt's flags is newly set:
    # the next poll looks at the flags at once, not at its next FLAG_POLL_S.
    flags_changed: bool = False
    # The claim has just beaten: the first beat is up to one period later (a cancel
    # meanwhile comes sooner through the Redis flag), at random from half of it on, so
    # that attempts claimed together do not all beat together, every period after.
    next_heartbeat: float = field(default_factory=lambda: time.monotonic() + _first_beat_s())

    def poll(self) -> StopCause | None:
        now = time.monotonic()
        if now >= self.next_heartbeat:
            self.next_heartbeat = now + settings.AGENT_HEARTBEAT_S
            cause = self.heartbeat()
            if cause is not None:
                return cause
        if self.flags_changed or now >= self.next_flag_check:
            self.flags_changed = False
            self.next_flag_check = now + FLAG_POLL_S
            if self.limit_hit is not None and self.limit_hit() is not None:
                return StopCause.LIMIT
            return self.check_flags()
        return None

    def next_poll_at(self) -> float:
        """When `poll` has something to do next (time.monotonic())."""
        return min(self.next_heartbeat, self.next_flag_check)

    def watch_flags(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Have a newly set cancel flag or drain deadline call `wake` (from another
        thread) so the loop polls at once; returns the function that stops it."""

        def flags_changed() -> None:
            self.flags_changed = True
            wake()

        return cancellation.subscribe_flags(self.task.pk, self.task.worker, flags_changed)

    def heartbeat(self) -> StopCause | None:
        try:
            return self.beat()
        except db_outage.UNREACHABLE as exc:
            # A missed beat or two is harmless (beat waits AGENT_STALE_AFTER_S); the
            # next one tries again, and the writes stay guarded meanwhile.
            log.warning("heartbeat_missed_database_unreachable", error=str(exc)[:200])
            db_outage.forget_broken_connection()
            return None

    def beat(self) -> StopCause | None:
        ours = {"pk": self.task.pk, "status": TaskStatus.RUNNING, "attempts": self.attempt}
        # One statement while all is well; a second only to tell a cancel from a loss.
        beat = {"heartbeat_at": timezone.now()}
        if update_matching(Task, {**ours, "cancel_requested_at": None}, beat):
            return None
        cancelled = (
            Task.objects.filter(**ours).values_list("cancel_requested_at", flat=True).first()
        )
        return StopCause.LOST if cancelled is None else StopCause.CANCEL

    def check_flags(self) -> StopCause | None:
        flags = cancellation.read_flags(self.task.pk, self.task.worker)
        if flags is None:  # not read yet, or Redis unreachable for a while
            return None
        cancel, deadline = flags
        if cancel:
            return StopCause.CANCEL
        left = draining.seconds_left(deadline)
        if left is None:
            return None
        if left == 0:
            return StopCause.DRAIN
        # Look again when the grace period is over.
        self.next_flag_check = min(self.next_flag_check, time.monotonic() + left)
        return None
