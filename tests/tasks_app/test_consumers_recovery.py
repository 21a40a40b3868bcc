"""Nothing is lost across web restarts, several web processes, or lost pushes."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import httpx
import pytest
from channels_redis.core import RedisChannelLayer
from django.db import transaction
from django.db.models import F

from tasks_app.models import Task, TaskEvent
from tasks_app.services.lifecycle import claim_task
from tasks_app.services.tokens import api_token_create
from tests.factories import make_task, make_user
from tests.live import (
    asgi_server,
    child_env,
    stop_process,
    wait_until,
    ws_connect,
    ws_recv_until,
    ws_recv_until_closed,
)
from tests.tasks_app.test_consumers_stream import finish, is_status, running_task, say

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def say_without_push(task: Task, text: str) -> None:
    """Store an event the way append_events does, but with its push lost."""
    with transaction.atomic():
        Task.objects.filter(pk=task.pk).update(last_seq=F("last_seq") + 1)
        seq = Task.objects.values_list("last_seq", flat=True).get(pk=task.pk)
        TaskEvent.objects.create(
            task=task, seq=seq, attempt=task.attempts, kind="text", payload={"text": text}
        )


def events_of(messages: list[dict]) -> list[tuple[int, str]]:
    return [
        (m["seq"], m["payload"].get("text", m["payload"].get("status")))
        for m in messages
        if m["type"] == "event"
    ]


def test_client_reconnecting_after_a_web_restart_gets_the_rest_exactly_once(django_db_setup):
    user = make_user()
    key = api_token_create(user=user)[1]
    task = running_task(user)
    say(task, "one", "two")
    env = child_env()
    with asgi_server(env, name="web-1") as (web1, live1):
        with ws_connect(web1, f"/ws/tasks/{task.pk}/", token=key) as ws:
            first = ws_recv_until(ws, is_status)
            say(task, "three")
            first += ws_recv_until(ws, lambda m: m.get("seq") == 4)
            stop_process(live1)
            rest_of_first, _ = ws_recv_until_closed(ws)
    seen = events_of(first + rest_of_first)
    # Written while no web process runs: only the database has them.
    say(task, "four", "five")
    finish(task)
    last = seen[-1][0]
    with (
        asgi_server(env, name="web-2") as (web2, _),
        ws_connect(web2, f"/ws/tasks/{task.pk}/?after={last}", token=key) as ws,
    ):
        second, code = ws_recv_until_closed(ws)

    assert seen + events_of(second) == [
        (1, "running"),
        (2, "one"),
        (3, "two"),
        (4, "three"),
        (5, "four"),
        (6, "five"),
        (7, "succeeded"),
    ]
    assert second[-1] == {"type": "end", "status": "succeeded"} and code == 1000


def test_events_reach_clients_on_every_web_process(django_db_setup):
    user = make_user()
    key = api_token_create(user=user)[1]
    task = running_task(user)
    env = child_env()
    with (
        asgi_server(env, name="web-a") as (web_a, _),
        asgi_server(env, name="web-b") as (web_b, _),
        ws_connect(web_a, f"/ws/tasks/{task.pk}/?after=1", token=key) as on_a,
        ws_connect(web_b, f"/ws/tasks/{task.pk}/?after=1", token=key) as on_b,
        ws_connect(web_b, "/ws/dashboard/", token=key) as dashboard_b,
    ):
        ws_recv_until(on_a, is_status)
        ws_recv_until(on_b, is_status)
        say(task, "live")
        finish(task)
        got_a, _ = ws_recv_until_closed(on_a)
        got_b, _ = ws_recv_until_closed(on_b)
        dashboard = ws_recv_until(dashboard_b, is_status)

    assert events_of(got_a) == events_of(got_b) == [(2, "live"), (3, "succeeded")]
    assert dashboard[0]["task"]["id"] == task.pk and dashboard[0]["status"] == "succeeded"


@pytest.fixture(scope="module")
def web(django_db_setup: None) -> Iterator[str]:
    # The default heartbeat (20 s) never fires during a test: only the gap logic can help.
    with asgi_server(child_env()) as (url, _):
        yield url


@pytest.fixture(scope="module")
def fast_heartbeat_web(django_db_setup: None) -> Iterator[str]:
    with asgi_server(child_env(AGENT_WS_HEARTBEAT_S="1")) as (url, _):
        yield url


def test_a_gap_in_pushes_is_filled_from_the_database_in_order(web):
    user = make_user()
    task = running_task(user)
    path = f"/ws/tasks/{task.pk}/?after=1"
    with ws_connect(web, path, token=api_token_create(user=user)[1]) as ws:
        ws_recv_until(ws, is_status)
        say_without_push(task, "lost")
        say(task, "pushed")
        got = ws_recv_until(ws, lambda m: m.get("seq") == 3)
    assert events_of(got) == [(2, "lost"), (3, "pushed")]


def test_a_lost_last_push_still_arrives_by_the_heartbeat(fast_heartbeat_web):
    user = make_user()
    task = running_task(user)
    path = f"/ws/tasks/{task.pk}/?after=1"
    with ws_connect(fast_heartbeat_web, path, token=api_token_create(user=user)[1]) as ws:
        ws_recv_until(ws, is_status)
        say_without_push(task, "lost")
        got = ws_recv_until(ws, lambda m: m.get("seq") == 2, timeout_s=15)
    assert events_of(got) == [(2, "lost")]


def test_open_sockets_are_counted_in_metrics(web):
    user = make_user()
    task = make_task(user)

    def open_sockets() -> float:
        for line in httpx.get(web + "/metrics").text.splitlines():
            if line.startswith("agentsite_websocket_connections "):
                return float(line.split()[1])
        raise AssertionError("no agentsite_websocket_connections in /metrics")

    with ws_connect(web, f"/ws/tasks/{task.pk}/", token=api_token_create(user=user)[1]) as ws:
        ws_recv_until(ws, is_status)
        wait_until(lambda: open_sockets() == 1, 10, "the open socket to be counted")
    wait_until(lambda: open_sockets() == 0, 10, "the closed socket to be uncounted")


def test_channel_layer_has_no_read_timeout_around_its_blocking_pop(settings):
    # redis-py 8's 5 s default equals the pop (idle consumers crashed), and any read
    # timeout can swallow a consumer's cancellation (see the settings).
    host = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]
    assert host["socket_timeout"] is None


def test_web_server_stops_gracefully_after_many_sockets_came_and_went(django_db_setup):
    user = make_user()
    key = api_token_create(user=user)[1]
    task = make_task(user)
    with asgi_server(child_env(), name="web-churn") as (web, live):
        for _ in range(15):
            with ws_connect(web, f"/ws/tasks/{task.pk}/", token=key) as ws:
                ws_recv_until(ws, is_status)
            with ws_connect(web, "/ws/dashboard/") as ws:
                ws_recv_until_closed(ws)
        # A consumer stuck on its way out keeps uvicorn waiting until it is killed (-9);
        # a clean shutdown ends with uvicorn re-raising the SIGTERM it handled (-15).
        assert stop_process(live, grace_s=10) == -signal.SIGTERM, live.log()[-3000:]


def test_an_idle_socket_stays_open_and_live(web):
    user = make_user()
    task = make_task(user)
    with ws_connect(web, f"/ws/tasks/{task.pk}/", token=api_token_create(user=user)[1]) as ws:
        ws_recv_until(ws, is_status)
        # Idleness is the scenario: a crashed consumer would close the socket meanwhile.
        with pytest.raises(TimeoutError):
            ws.recv(timeout=RedisChannelLayer.brpop_timeout + 2)
        claim_task(task, worker="test-worker")
        got = ws_recv_until(ws, is_status)
    assert events_of(got) == [(1, "running")]
