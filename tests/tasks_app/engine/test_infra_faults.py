"""PostgreSQL and Redis cut off from the worker, beat and web for 10 s while 10 tasks stream.

The services themselves keep running: a TCP proxy (tests/fakes/tcp_proxy.py) stands
between them and the processes under test, which reach them only through it, and either
resets every connection (`refuse`: a crashed or restarted server) or goes silent
(`blackhole`: a hung server or a partition, seen only by timeouts). The test process
talks to the services directly to watch.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from tasks_app.models import Source, Task, TaskStatus
from tasks_app.services.tasks import task_create
from tests.engine import celery_beat, celery_worker, engine_env, wait_until_finished, worker_answers
from tests.fakes.anthropic_api import FakeAnthropic, Text
from tests.fakes.tcp_proxy import ProxyMode, TcpProxy
from tests.live import asgi_server, test_database_url, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = TaskStatus
TASKS = 10
OUTAGE_S = 10.0
# Each answer streams for about 12 s (4 characters every 0.1 s), so the outage begins
# while every task is mid-stream; where it ends does not matter to what is checked.
CHUNK_CHARS, CHUNK_DELAY_S = 4, 0.1


def answer(i: int) -> str:
    return f"Answer {i}: " + " ".join(f"w{i}-{j}" for j in range(80))


def timings(**overrides: str) -> dict[str, str]:
    """One worker runs all 10 at once. A heartbeat may go 30 s unwritten before beat
    calls the worker lost (production: 60 s on a 5 s beat), so a 10 s outage must be
    ridden out, not turned into retries."""
    return {
        "AGENT_MAX_RUNNING_PER_USER": str(TASKS),
        "AGENT_MAX_CONCURRENCY": str(TASKS),
        "AGENT_STALE_AFTER_S": "30",
        **overrides,
    }


def start_streaming_tasks(fake_model: FakeAnthropic, owner) -> list[Task]:
    tasks = []
    for i in range(TASKS):
        fake_model.script(f"[stream{i}]", Text(answer(i), CHUNK_CHARS, CHUNK_DELAY_S))
        tasks.append(task_create(owner=owner, prompt=f"[stream{i}] talk", source=Source.API))
    ids = [t.pk for t in tasks]
    wait_until(
        lambda: Task.objects.filter(pk__in=ids, events__kind="text").distinct().count() == TASKS,
        90,
        f"all {TASKS} tasks streaming",
    )
    return tasks


def last_seqs(tasks: list[Task]) -> dict[int, int]:
    return dict(Task.objects.filter(pk__in=[t.pk for t in tasks]).values_list("pk", "last_seq"))


def all_moved_on(before: dict[int, int]) -> bool:
    """Every task stored something since `before` (a task that had ended counts)."""
    now = Task.objects.filter(pk__in=before).values_list("pk", "last_seq", "status")
    return all(seq > before[pk] or status in S.terminal() for pk, seq, status in now)


def readyz(url: str) -> tuple[int, list[str]]:
    response = httpx.get(url + "/readyz", timeout=30)
    return response.status_code, response.json()["failing"]


def assert_every_task_ended_once_with_every_event(tasks: list[Task]) -> None:
    finished = wait_until_finished([t.pk for t in tasks], timeout_s=120)
    assert [t.status for t in finished] == [S.SUCCEEDED] * TASKS, [
        (t.pk, t.status, t.error) for t in finished
    ]
    for i, task in enumerate(finished):
        events = list(task.events.order_by("seq"))
        assert [e.seq for e in events] == list(range(1, len(events) + 1)), task.pk
        assert [e.kind for e in events].count("result") == 1
        statuses = [e.payload["status"] for e in events if e.kind == "status"]
        assert statuses == ["queued", "running", "succeeded"], (task.pk, statuses)
        deltas = [e.payload["text"] for e in events if e.kind == "text" and e.payload["partial"]]
        assert "".join(deltas) == answer(i) == task.result_text
        assert task.attempts == 1


@pytest.fixture
def postgres_proxy() -> Iterator[TcpProxy]:
    db = settings.DATABASES["default"]
    host, port = db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432)
    with TcpProxy(host, port, name="pg-proxy") as proxy:
        yield proxy


@pytest.mark.skipif(settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"), reason="PG")
@pytest.mark.parametrize("shape", [ProxyMode.REFUSE, ProxyMode.BLACKHOLE])
def test_postgres_cut_off_for_10s_loses_no_task_and_no_event(
    shape, postgres_proxy, fake_model, owner, workspace_root, tmp_path: Path
):
    env = engine_env(
        fake_model.base_url,
        workspace_root,
        DATABASE_URL=postgres_proxy.url(test_database_url()),
        **timings(),
    )
    started = time.monotonic()
    with (
        celery_beat(env, tmp_path),
        celery_worker(env, concurrency=TASKS) as worker,
        asgi_server(env, name="web-pg-proxy") as (url, _),
    ):
        tasks = start_streaming_tasks(fake_model, owner)
        streaming_s = time.monotonic() - started
        assert readyz(url) == (200, [])
        postgres_proxy.set_mode(shape)
        cut_at = time.monotonic()
        during = []
        while time.monotonic() - cut_at < OUTAGE_S:
            during.append(readyz(url))
        stored_before = last_seqs(tasks)
        postgres_proxy.set_mode(ProxyMode.PASS)
        restored_at = time.monotonic()
        wait_until(lambda: readyz(url) == (200, []), 30, "readyz to answer 200 again")
        ready_after_s = time.monotonic() - restored_at
        wait_until(lambda: all_moved_on(stored_before), 60, "every task to store again")
        resumed_after_s = time.monotonic() - restored_at
        assert_every_task_ended_once_with_every_event(tasks)
        assert worker.process.poll() is None and worker_answers(worker.name)
    print(
        f"\npostgres {shape} {OUTAGE_S:.0f}s: all streaming after {streaming_s:.1f}s; readyz "
        f"during: {len(during)} answers {set(map(str, during))}; after: 200 in "
        f"{ready_after_s:.2f}s, every task storing again in {resumed_after_s:.2f}s; "
        f"total {time.monotonic() - started:.1f}s"
    )
    assert during and all(answer == (503, ["database"]) for answer in during), during
