"""Helpers of the infrastructure fault tests: streaming tasks, what to check after an
outage, a reconnecting WebSocket follower, a worker on RabbitMQ."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
from celery import Celery
from websockets.exceptions import WebSocketException

from tasks_app.models import Source, Task, TaskStatus
from tasks_app.services.tasks import task_create
from tests.engine import wait_until_finished, worker_argv
from tests.fakes.anthropic_api import FakeAnthropic, Text
from tests.live import LiveProcess, start_process, stop_process, wait_until, ws_connect, ws_recv

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
        # Ten CLIs starting at once on a small machine can push the worker's periodic
        # `claude --version` past its timeout, which closes the agent queue for a round;
        # that gate is not what these tests are about.
        "AGENT_CLI_CHECK_INTERVAL_S": "300",
        **overrides,
    }


def created_here(owner, prompt: str) -> Task:
    return task_create(owner=owner, prompt=prompt, source=Source.API)


def start_streaming_tasks(
    fake_model: FakeAnthropic, owner, create: Callable[[Any, str], Task] = created_here
) -> list[Task]:
    tasks = []
    for i in range(TASKS):
        fake_model.script(f"[stream{i}]", Text(answer(i), CHUNK_CHARS, CHUNK_DELAY_S))
        tasks.append(create(owner, f"[stream{i}] talk"))
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


class Follower(threading.Thread):
    """A WebSocket client on one task, as the task page is: whenever its socket drops
    (or cannot be opened) it reconnects with ?after=<last seq seen>, until `end`."""

    def __init__(self, url: str, key: str, task_id: int) -> None:
        super().__init__(name=f"follow-{task_id}", daemon=True)
        self.url, self.key, self.task_id = url, key, task_id
        self.seqs: list[int] = []
        self.connects = 0
        self.end: str | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while self.end is None and not self.stop.is_set():
            after = self.seqs[-1] if self.seqs else 0
            try:
                path = f"/ws/tasks/{self.task_id}/?after={after}"
                with ws_connect(self.url, path, token=self.key) as ws:
                    self.connects += 1
                    self.follow(ws)
            except (WebSocketException, OSError):
                # A browser's reconnect backs off a little too; this is its pace.
                self.stop.wait(0.5)

    def follow(self, ws) -> None:
        while not self.stop.is_set():
            try:
                message = ws_recv(ws, timeout_s=1.0)
            except TimeoutError:
                continue
            if message["type"] == "event":
                self.seqs.append(message["seq"])
            elif message["type"] == "end":
                self.end = message["status"]
                return


def redis_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


def post_task(url: str, key: str, prompt: str) -> httpx.Response:
    return httpx.post(
        url + "/api/tasks/",
        json={"prompt": prompt},
        headers={"Authorization": f"Token {key}"},
        timeout=30,
    )


@contextlib.contextmanager
def amqp_worker(env: dict[str, str], amqp: Celery) -> Iterator[LiveProcess]:
    """celery_worker, answering pings over RabbitMQ (the test's own app speaks Redis)."""
    name = f"w-amqp-{uuid.uuid4().hex[:8]}@localhost"
    queues = "agent,github,dead_letter,celery"
    live = start_process(name.split("@")[0], worker_argv(name, TASKS, queues), env)
    live.name = name
    try:
        wait_until(
            lambda: live.process.poll() is not None or amqp_answers(amqp, name),
            60,
            f"worker {name} to answer ping over RabbitMQ",
        )
        assert live.process.poll() is None, live.log()
        yield live
    finally:
        stop_process(live, grace_s=30)


def amqp_answers(amqp: Celery, name: str) -> bool:
    return bool(amqp.control.ping(destination=[name], timeout=0.5))
