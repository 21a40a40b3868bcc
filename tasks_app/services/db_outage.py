"""Riding out a short database outage inside a running attempt.

An attempt that loses the database for a few seconds keeps its CLI running: its events
wait in memory (services.event_writer.EventWriter) and its last writes are retried until
the database answers again. There is no point holding on longer than
AGENT_STALE_AFTER_S: by then beat calls the attempt lost and requeues the task, and the
attempt's guarded writes find that out.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TypeVar

import structlog
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection

log = structlog.get_logger(__name__)
T = TypeVar("T")

# Errors that say the server could not be reached or the connection broke (psycopg's
# pool timeout and connection timeout are OperationalErrors), not that a query is wrong.
UNREACHABLE: tuple[type[Exception], ...] = (OperationalError, InterfaceError)
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 4.0


def forget_broken_connection() -> None:
    """Drop this thread's connection, so the next query takes a working one (a pooled
    connection goes back to the pool, which discards it when it is broken)."""
    with contextlib.suppress(DatabaseError):
        connection.close()


def retry_while_unreachable(step: Callable[[], T], *, what: str) -> T:
    """`step()`, again after a backoff for as long as the database is unreachable, up
    to AGENT_STALE_AFTER_S; then the last error is raised. `step` must be safe to run
    again after a failure (its writes guarded, or idempotent)."""
    deadline = time.monotonic() + settings.AGENT_STALE_AFTER_S
    delay = RETRY_FIRST_S
    while True:
        try:
            return step()
        except UNREACHABLE as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("database_unreachable", step=what, error=str(exc)[:200], retry_s=delay)
            forget_broken_connection()
            time.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
