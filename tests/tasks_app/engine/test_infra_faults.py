"""PostgreSQL, Redis and RabbitMQ cut off from the worker, beat and web for 10 s while 10
tasks stream.

The services themselves keep running: a TCP proxy (tests/fakes/tcp_proxy.py) stands
between them and the processes under test, which reach them only through it, and either
resets every connection (`refuse`: a crashed or restarted server) or goes silent
(`blackhole`: a hung server or a partition, seen only by timeouts). The test process
talks to the services directly to watch.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery import Celery
from django.conf import settings

from tasks_app.models import Task
from tasks_app.services.tokens import api_token_create
from tests.engine import (
    celery_beat,
    celery_worker,
    engine_env,
    wait_until_finished,
    worker_answers,
)
from tests.fakes.anthropic_api import Text
from tests.fakes.tcp_proxy import ProxyMode, TcpProxy
from tests.live import (
    asgi_server,
    wait_until,
)

# Imported under another name: pytest would collect a `test_*` name as a test.
from tests.live import test_database_url as children_database_url
from tests.markers import on_postgresql
from tests.rabbitmq import AMQP_URL, rabbitmq_to_ourselves
from tests.tasks_app.engine.outages import (
    OUTAGE_S,
    TASKS,
    Follower,
    S,
    all_moved_on,
    amqp_answers,
    amqp_worker,
    assert_every_task_ended_once_with_every_event,
    last_seqs,
    post_task,
    readyz,
    redis_address,
    start_streaming_tasks,
    timings,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def postgres_proxy() -> Iterator[TcpProxy]:
    db = settings.DATABASES["default"]
    host, port = db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432)
    with TcpProxy(host, port, name="pg-proxy") as proxy:
        yield proxy


@on_postgresql
@pytest.mark.parametrize("shape", [ProxyMode.REFUSE, ProxyMode.BLACKHOLE])
def test_postgres_cut_off_for_10s_loses_no_task_and_no_event(
    shape, postgres_proxy, fake_model, owner, workspace_root, tmp_path: Path
):
    env = engine_env(
        fake_model.base_url,
        workspace_root,
        DATABASE_URL=postgres_proxy.url(children_database_url()),
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


@pytest.fixture
def redis_proxy() -> Iterator[TcpProxy]:
    host, port = redis_address(settings.REDIS_URL)
    with TcpProxy(host, port, name="redis-proxy") as proxy:
        yield proxy


@pytest.mark.skipif(
    redis_address(settings.CELERY_BROKER_URL) != redis_address(settings.REDIS_URL)
    or not settings.CELERY_BROKER_URL.startswith("redis"),
    reason="the broker is this Redis",
)
@pytest.mark.parametrize("shape", [ProxyMode.REFUSE, ProxyMode.BLACKHOLE])
def test_redis_cut_off_for_10s_loses_no_task_event_or_websocket_message(
    shape, redis_proxy, fake_model, owner, workspace_root, tmp_path: Path
):
    env = engine_env(
        fake_model.base_url,
        workspace_root,
        REDIS_URL=redis_proxy.url(settings.REDIS_URL),
        CELERY_BROKER_URL=redis_proxy.url(settings.CELERY_BROKER_URL),
        AGENT_WS_HEARTBEAT_S="2",
        **timings(),
    )
    key = api_token_create(user=owner)[1]
    started = time.monotonic()
    with (
        celery_beat(env, tmp_path),
        celery_worker(env, concurrency=TASKS) as worker,
        asgi_server(env, name="web-redis-proxy") as (url, _),
    ):
        tasks = start_streaming_tasks(fake_model, owner)
        followers = [Follower(url, key, t.pk) for t in tasks[:3]]
        for follower in followers:
            follower.start()
        wait_until(lambda: all(f.seqs for f in followers), 30, "followers to see events")
        streaming_s = time.monotonic() - started
        redis_proxy.set_mode(shape)
        cut_at = time.monotonic()
        stored_before = last_seqs(tasks)
        ended_before = set(
            Task.objects.filter(pk__in=stored_before, status__in=S.terminal()).values_list(
                "pk", flat=True
            )
        )
        # Created while the broker is away: its wake-up is lost, beat must bring it back.
        fake_model.script("[late]", Text("late but here"))
        created = httpx.post(
            url + "/api/tasks/",
            json={"prompt": "[late] created during the outage"},
            headers={"Authorization": f"Token {key}"},
            timeout=30,
        )
        # The outage's length is the fault itself, not a wait for something to happen.
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - cut_at)))
        stored_during = {pk: seq - stored_before[pk] for pk, seq in last_seqs(tasks).items()}
        redis_proxy.set_mode(ProxyMode.PASS)
        restored_at = time.monotonic()
        assert_every_task_ended_once_with_every_event(tasks)
        finished_s = time.monotonic() - restored_at
        assert created.status_code == 201, created.text
        late = wait_until_finished([created.json()["id"]], timeout_s=60)[0]
        assert late.status == S.SUCCEEDED and late.result_text == "late but here"
        for follower in followers:
            follower.join(30)
        assert worker.process.poll() is None
        wait_until(lambda: worker_answers(worker.name), 30, "the worker to answer over the broker")
    for follower, task in zip(followers, tasks, strict=False):
        follower.stop.set()
        stored = list(task.events.order_by("seq").values_list("seq", flat=True))
        assert follower.end == "succeeded"
        assert follower.seqs == stored, (task.pk, follower.connects)
    print(
        f"\nredis {shape} {OUTAGE_S:.0f}s: all streaming after {streaming_s:.1f}s; events "
        f"stored during the outage per task {sorted(stored_during.values())}; websocket "
        f"connections per follower {[f.connects for f in followers]}; all finished "
        f"{finished_s:.1f}s after; total {time.monotonic() - started:.1f}s"
    )
    # Redis is not the database: tasks that were still running kept storing.
    assert all(n > 0 for pk, n in stored_during.items() if pk not in ended_before), stored_during


@pytest.fixture
def amqp() -> Iterator[Celery]:
    app = Celery(f"faults-{uuid.uuid4().hex[:8]}", broker=AMQP_URL, set_as_current=False)
    with rabbitmq_to_ourselves():
        yield app
    app.close()


@pytest.fixture
def rabbitmq_proxy() -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", 5672, name="amqp-proxy") as proxy:
        yield proxy


def test_rabbitmq_restarted_for_10s_mid_run_loses_no_task_or_event(
    rabbitmq_proxy, amqp, fake_model, owner, workspace_root, tmp_path: Path
):
    """The broker's connections are reset and refused for 10 s, as across a restart
    (the proxy keeps RabbitMQ's queues: a restart that lost them is the wiped-broker
    case beat's re-publisher covers, see test_faults.py)."""
    env = engine_env(
        fake_model.base_url,
        workspace_root,
        CELERY_BROKER_URL=rabbitmq_proxy.url(AMQP_URL),
        **timings(),
    )
    key = api_token_create(user=owner)[1]
    started = time.monotonic()
    with (
        celery_beat(env, tmp_path),
        amqp_worker(env, amqp) as worker,
        asgi_server(env, name="web-amqp-proxy") as (url, _),
    ):
        # Through the web, so the wake-ups travel over RabbitMQ as in production.
        def create(_owner: Any, prompt: str) -> Task:
            response = post_task(url, key, prompt)
            assert response.status_code == 201, response.text
            return Task.objects.get(pk=response.json()["id"])

        tasks = start_streaming_tasks(fake_model, owner, create)
        streaming_s = time.monotonic() - started
        rabbitmq_proxy.set_mode(ProxyMode.REFUSE)
        cut_at = time.monotonic()
        stored_before = last_seqs(tasks)
        fake_model.script("[late]", Text("late but here"))
        created = post_task(url, key, "[late] created while the broker restarts")
        # The outage's length is the fault itself, not a wait for something to happen.
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - cut_at)))
        stored_during = {pk: seq - stored_before[pk] for pk, seq in last_seqs(tasks).items()}
        rabbitmq_proxy.set_mode(ProxyMode.PASS)
        restored_at = time.monotonic()
        assert_every_task_ended_once_with_every_event(tasks)
        assert created.status_code == 201, created.text
        late = wait_until_finished([created.json()["id"]], timeout_s=60)[0]
        late_s = time.monotonic() - restored_at
        assert late.status == S.SUCCEEDED and late.result_text == "late but here"
        assert worker.process.poll() is None
        wait_until(lambda: amqp_answers(amqp, worker.name), 30, "the worker to answer again")
    print(
        f"\nrabbitmq refused {OUTAGE_S:.0f}s: all streaming after {streaming_s:.1f}s; events "
        f"stored during the outage per task {sorted(stored_during.values())}; the task "
        f"created during it done {late_s:.1f}s after; total {time.monotonic() - started:.1f}s"
    )
