"""An attempt's events on their way to the database and to the watchers.

Most of what a model streams is text deltas, a few characters each. Storing each would
be a row, an INSERT and a push per delta; so consecutive deltas of one text block are
merged, and the block being written is held back from the database (for up to
AGENT_STREAM_DELTA_HOLD_MS, or until the block ends or grows long) while watchers see it
at once as a *preview*: the merged text so far, pushed at most every
AGENT_STREAM_PREVIEW_MS, marked with the seq of the last stored event it follows. A
preview is never stored and never replayed: the stored event that ends it carries all
of its text (and perhaps more), so a client drops the preview when that event comes,
and a client that joins late sees the block once it is stored or at the next preview.
Other events are stored at most every AGENT_STREAM_FLUSH_MS, in one INSERT and one push.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field

import structlog
from django.conf import settings

from cli_exec.events import CliEvent, EventKind
from cli_exec.redact import Redactor
from tasks_app.compiled_sql import column_by_pk
from tasks_app.models import Task
from tasks_app.services import broadcast, db_outage, model_breaker
from tasks_app.services.coalescing import add_coalesced, is_text_delta
from tasks_app.services.events import NewEvent, append_events

log = structlog.get_logger(__name__)
MAX_EVENTS_PER_INSERT = 500
# How often events held through a database outage are offered to it again.
EVENT_RETRY_S = 1.0
# A block longer than this is stored rather than previewed: every preview carries the
# whole held text to every watcher.
MAX_PREVIEW_CHARS = 4096
MODEL_KINDS = frozenset({EventKind.TEXT, EventKind.TOOL_USE})
# Each attempt holds its blocks for a share of AGENT_STREAM_DELTA_HOLD_MS drawn between
# this and 1: attempts started together (a burst of tasks) would otherwise all store
# their blocks at the same moment, every time, and wait on the database together while
# their CLIs' next lines wait in the pipes.
HOLD_SHARE_MIN = 0.75


def from_the_model(event: CliEvent) -> bool:
    """Said by the model API itself: its messages carry its "msg_…" ids (the CLI's own
    stand-ins, such as its API error messages, do not)."""
    return event.kind in MODEL_KINDS and str(event.payload.get("message_id", "")).startswith("msg_")


def _seconds(setting: str) -> float:
    return float(getattr(settings, setting)) / 1000


def _jittered_hold_s() -> float:
    share = random.uniform(HOLD_SHARE_MIN, 1.0)  # noqa: S311 - spreading load, not a secret
    return _seconds("AGENT_STREAM_DELTA_HOLD_MS") * share


@dataclass
class EventWriter:
    """Stores events as they arrive; the result waits for the finishing transaction.

    While the database is unreachable the events wait here, in order, and are stored
    once it answers again (tried every EVENT_RETRY_S), so a short outage costs the
    attempt nothing; their seqs are given when they are stored, so none is skipped.
    """

    task: Task
    attempt: int
    held_back: list[NewEvent] = field(default_factory=list)
    unstored: list[NewEvent] = field(default_factory=list)
    model_answered: bool = False
    retry_at: float = 0.0
    outage_since: float | None = None
    last_seq: int | None = None  # of the last event this writer stored
    in_doubt: int = 0  # events at the head of `unstored` whose commit may have happened
    redactor: Redactor = field(default_factory=lambda: Redactor(()))
    flush_s: float = field(default_factory=lambda: _seconds("AGENT_STREAM_FLUSH_MS"))
    flushed_at: float = -math.inf  # when events were last stored
    hold_s: float = field(default_factory=_jittered_hold_s)
    preview_s: float = field(default_factory=lambda: _seconds("AGENT_STREAM_PREVIEW_MS"))
    tail_since: float = 0.0  # when the last of `unstored` began (merged into since)
    previewed: str | None = None  # the text of the last preview of the held block
    previewed_at: float = -math.inf

    def write(self, events: list[CliEvent]) -> None:
        if not self.model_answered and any(from_the_model(e) for e in events):
            # The model API answers: a breaker's probe needs to wait for nothing more.
            self.model_answered = True
            model_breaker.model_answered_now()
        for event in events:
            new = NewEvent(event.kind.value, event.payload)
            # The result and the final status commit together, so a crash between them
            # can never leave a task with a result but no ending (or two results).
            if event.kind is EventKind.RESULT or self.held_back:
                self.held_back.append(new)
            else:
                self.hold(new)
        self.tick()

    def tick(self) -> None:
        """Store what is due, then preview the held block if it changed."""
        if self.flush_due():
            self.flush()
        if self.preview_due():
            self.preview()

    def hold(self, event: NewEvent) -> None:
        """Keep `event` for the next flush, merged into the text delta before it when it
        continues it; never into an event whose commit is in doubt (it may be stored)."""
        before = len(self.unstored)
        if before > self.in_doubt:
            add_coalesced(self.unstored, event, self.redactor.redact_text)
        else:
            self.unstored.append(event)
        if len(self.unstored) > before:
            self.tail_since = time.monotonic()

    def held_block(self, now: float) -> NewEvent | None:
        """The text block being written, held back from the database: the last waiting
        event when it is a text delta, short, held for less than AGENT_STREAM_DELTA_HOLD_MS,
        and not in doubt."""
        if not self.unstored or len(self.unstored) <= self.in_doubt:
            return None
        tail = self.unstored[-1]
        if (
            is_text_delta(tail)
            and len(tail.payload["text"]) <= MAX_PREVIEW_CHARS
            and now < self.tail_since + self.hold_s
        ):
            return tail
        return None

    def storable(self, held: NewEvent | None) -> int:
        """How many waiting events (from the head) are to be stored at the next flush:
        all but the `held` block."""
        return len(self.unstored) - (held is not None)

    def flush_at(self) -> float | None:
        """When something is to be done next: store the waiting events (at once, unless
        the last flush was less than AGENT_STREAM_FLUSH_MS ago, or at the next retry
        after a database outage), store the held block once held long enough, or
        preview it again."""
        now = time.monotonic()
        held = self.held_block(now)
        times = []
        if self.storable(held):
            times.append(self.store_at(held))
        if held is not None:
            times.append(max(self.tail_since + self.hold_s, self.retry_at))
            if self.can_preview(held):
                times.append(self.previewed_at + self.preview_s)
        return min(times) if times else None

    def can_preview(self, held: NewEvent) -> bool:
        """Whether `held` has something new to show that a preview can show now."""
        return (
            self.last_seq is not None
            # A preview shows the block after the last stored event: nothing may wait
            # between them (as through a database outage).
            and len(self.unstored) == 1
            and held.payload["text"] != self.previewed
        )

    def store_at(self, held: NewEvent | None) -> float:
        """When the storable events go: after AGENT_STREAM_FLUSH_MS, or at once when a
        held block waits behind them (it cannot be previewed before they are stored)."""
        if held is not None:
            return self.retry_at
        return max(self.flushed_at + self.flush_s, self.retry_at)

    def flush_due(self) -> bool:
        now = time.monotonic()
        held = self.held_block(now)
        if not self.storable(held):
            return False
        if len(self.unstored) >= MAX_EVENTS_PER_INSERT:
            return True
        return now >= self.store_at(held)

    def preview_due(self) -> bool:
        now = time.monotonic()
        held = self.held_block(now)
        return (
            held is not None
            and self.can_preview(held)
            and now >= self.previewed_at + self.preview_s
        )

    def preview(self) -> None:
        held = self.unstored[-1]
        assert self.last_seq is not None  # noqa: S101 - preview_due checked it
        broadcast.task_preview(
            self.task.pk, after=self.last_seq, kind=held.kind, payload=held.payload
        )
        self.previewed = held.payload["text"]
        self.previewed_at = time.monotonic()

    def flush(self, *, final: bool = False) -> None:
        """Store the waiting events; raises StreamOwnershipLost if the task moved on.
        `final`: now, all of them, and an unreachable database is raised rather than
        waited out."""
        if not self.unstored or (time.monotonic() < self.retry_at and not final):
            return
        batch: list[NewEvent] = []
        try:
            if self.last_seq is None:  # once per attempt: where this writer starts
                self.last_seq = self.stored_seq()
            elif self.in_doubt:
                self.settle_in_doubt()
            held = None if final else self.held_block(time.monotonic())
            count = self.storable(held)
            while count > 0:
                batch = self.unstored[: min(count, MAX_EVENTS_PER_INSERT)]
                rows = append_events(
                    self.task, batch, attempt=self.attempt, running_attempt=self.attempt
                )
                del self.unstored[: len(batch)]
                count -= len(batch)
                self.last_seq = rows[-1].seq
            self.flushed_at = time.monotonic()
            self.previewed = None
        except db_outage.UNREACHABLE as exc:
            if batch:  # the connection broke, perhaps after the server committed it
                self.in_doubt = len(batch)
            if self.outage_since is None:
                self.outage_since = time.monotonic()
                log.warning("events_held_database_unreachable", error=str(exc)[:200])
            db_outage.forget_broken_connection()
            self.retry_at = time.monotonic() + EVENT_RETRY_S
            if final:
                raise
            return
        if self.outage_since is not None:
            held_s = round(time.monotonic() - self.outage_since, 3)
            log.info("events_stored_after_outage", held_s=held_s)
            self.outage_since = None

    def settle_in_doubt(self) -> None:
        """Drop the batch whose commit broke off if the server did commit it: only this
        attempt adds events to a task it runs, so its seq counter tells."""
        current, last_seq = self.stored_seq(), self.last_seq or 0
        if current == last_seq + self.in_doubt:
            del self.unstored[: self.in_doubt]
            self.last_seq = current
        self.in_doubt = 0

    def stored_seq(self) -> int:
        return column_by_pk(Task, self.task.pk, "last_seq")

    def remaining(self) -> list[NewEvent]:
        """What the finishing transaction must store after a final flush: the held-back
        result and what followed it."""
        return [*self.unstored, *self.held_back]
