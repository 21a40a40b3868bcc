"""The attempt's event writer through a database outage: events held, stored once, in order."""

import time
from unittest import mock

import pytest
from django.db import OperationalError

from cli_exec.events import CliEvent, EventKind
from tasks_app.services import events as events_service
from tasks_app.services.event_writer import EventWriter
from tasks_app.services.lifecycle import claim_task
from tests.factories import make_task

real_append = events_service.append_events


def stderr(text: str) -> CliEvent:
    # stderr lines are never merged with one another, so each stays one event.
    return CliEvent(EventKind.STDERR, {"text": text})


def stored_lines(task) -> list[str]:
    return [e.payload["text"] for e in task.events.filter(kind="stderr").order_by("seq")]


def gapless(task) -> bool:
    seqs = list(task.events.order_by("seq").values_list("seq", flat=True))
    return seqs == list(range(1, len(seqs) + 1))


@pytest.fixture
def writer(user):
    task = make_task(user)
    assert claim_task(task, worker="test-worker")
    task.refresh_from_db()
    return EventWriter(task, task.attempts)


def failing_first(*, commit: bool):
    """append_events whose first call fails as a broken connection does: before the
    server saw anything, or after it committed (the client never heard back)."""
    calls = []

    def append(*args, **kwargs):
        calls.append(args)
        if len(calls) > 1:
            return real_append(*args, **kwargs)
        if commit:
            real_append(*args, **kwargs)
        raise OperationalError("server closed the connection unexpectedly")

    return mock.patch("tasks_app.services.event_writer.append_events", side_effect=append)


def write_through_failure(writer: EventWriter, *lines: str) -> None:
    for line in lines:
        writer.write([stderr(line)])
    with pytest.raises(OperationalError):
        writer.flush(final=True)


@pytest.mark.django_db(transaction=True)
def test_events_the_database_refused_are_stored_later_in_order(writer):
    with failing_first(commit=False):
        writer.retry_at = float("inf")  # hold everything until the final flush
        write_through_failure(writer, "one", "two")
    writer.write([stderr("three")])
    writer.flush(final=True)
    assert stored_lines(writer.task) == ["one", "two", "three"]
    assert gapless(writer.task)


@pytest.mark.django_db(transaction=True)
def test_a_batch_committed_before_the_connection_broke_is_not_stored_twice(writer):
    writer.write([stderr("zero")])
    writer.flush(final=True)  # the writer knows where it stands
    with failing_first(commit=True):
        writer.retry_at = float("inf")
        write_through_failure(writer, "one", "two")
    writer.write([stderr("three")])
    writer.flush(final=True)
    assert stored_lines(writer.task) == ["zero", "one", "two", "three"]
    assert gapless(writer.task)


@pytest.mark.django_db(transaction=True)
def test_a_block_held_behind_refused_events_waits_for_the_retry_without_spinning(writer):
    writer.write([stderr("zero")])  # stored at once: the writer knows where it stands
    with failing_first(commit=False):
        writer.write([stderr("one"), CliEvent(EventKind.TEXT, {"text": "a", "partial": True})])
    # The text block waits behind "one", which the database refused: no preview can show
    # it yet, so the attempt's next wake-up is the retry, not at once (a busy loop).
    assert len(writer.unstored) == 2
    wake_at = writer.flush_at()
    assert wake_at is not None and wake_at >= writer.retry_at > time.monotonic()
    writer.flush(final=True)
    assert stored_lines(writer.task) == ["zero", "one"]
    assert writer.task.events.get(kind="text").payload["text"] == "a"
