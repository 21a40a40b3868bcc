import pytest

from tasks_app.models import TaskEvent, TaskStatus
from tasks_app.services.events import NewEvent, StreamOwnershipLost, append_events
from tests.concurrency import race
from tests.factories import make_task, make_user


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_get_gapless_unique_seqs():
    task = make_task(make_user("writer"))

    def write(writer: int) -> None:
        for batch in range(10):
            events = [NewEvent("text", {"w": writer, "b": batch, "i": i}) for i in range(5)]
            append_events(task, events, attempt=1)

    race(6, write)
    seqs = list(TaskEvent.objects.filter(task=task).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, 301))
    task.refresh_from_db()
    assert task.last_seq == 300
    # Each batch is contiguous: a writer's five events were never interleaved.
    rows = TaskEvent.objects.filter(task=task).order_by("seq")
    for start in range(0, 300, 5):
        batch = [(r.payload["w"], r.payload["b"]) for r in rows[start : start + 5]]
        assert len(set(batch)) == 1


def test_guarded_append_refuses_when_attempt_is_not_running(user):
    task = make_task(user, status=TaskStatus.RUNNING, attempts=2)
    append_events(task, [NewEvent("text", {"t": "ok"})], attempt=2, running_attempt=2)
    with pytest.raises(StreamOwnershipLost):
        append_events(task, [NewEvent("text", {"t": "stale"})], attempt=1, running_attempt=1)
    assert list(task.events.values_list("seq", "payload")) == [(1, {"t": "ok"})]
    task.refresh_from_db()
    assert task.last_seq == 1
