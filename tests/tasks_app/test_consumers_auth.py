"""Who may open a socket: credentials, Origin, and the per-user connection cap."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

import pytest
import redis
from django.conf import settings
from django.test import Client
from websockets.exceptions import ConnectionClosed

from tasks_app.services import ws_connections
from tasks_app.services.tokens import api_token_create, api_token_revoke
from tests.factories import make_task, make_user
from tests.live import (
    asgi_server,
    child_env,
    wait_until,
    ws_close_code,
    ws_connect,
    ws_recv,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

EVIL = "http://evil.example"


@pytest.fixture(scope="module")
def web(django_db_setup: None) -> Iterator[str]:
    with asgi_server(child_env()) as (url, _):
        yield url


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}"


def accepted(ws) -> bool:
    """A task socket that was let in sends the task's current status first."""
    return ws_recv(ws)["type"] == "status"


def test_no_credentials_is_4401(web):
    task = make_task(make_user())
    assert ws_close_code(web, f"/ws/tasks/{task.pk}/") == 4401
    assert ws_close_code(web, "/ws/dashboard/", origin=web) == 4401


def test_session_cookie_from_allowed_origin_is_accepted(web):
    user = make_user()
    task = make_task(user)
    with ws_connect(web, f"/ws/tasks/{task.pk}/", cookie=session_cookie(user), origin=web) as ws:
        assert accepted(ws)


def test_session_cookie_without_origin_is_4401(web):
    user = make_user()
    task = make_task(user)
    assert ws_close_code(web, f"/ws/tasks/{task.pk}/", cookie=session_cookie(user)) == 4401


def test_wrong_origin_is_4403_whatever_the_credentials(web):
    user = make_user()
    task = make_task(user)
    path = f"/ws/tasks/{task.pk}/"
    assert ws_close_code(web, path, cookie=session_cookie(user), origin=EVIL) == 4403
    key = api_token_create(user=user)[1]
    assert ws_close_code(web, path, token=key, origin=EVIL) == 4403
    assert ws_close_code(web, path, token=key, origin="null") == 4403


def test_token_without_origin_is_accepted(web):
    user = make_user()
    task = make_task(user)
    key = api_token_create(user=user)[1]
    with ws_connect(web, f"/ws/tasks/{task.pk}/", token=key) as ws:
        assert accepted(ws)


def test_bad_or_revoked_token_is_4401_even_with_a_session(web):
    user = make_user()
    task = make_task(user)
    token, key = api_token_create(user=user)
    api_token_revoke(token=token)
    path = f"/ws/tasks/{task.pk}/"
    assert ws_close_code(web, path, token=key) == 4401
    assert ws_close_code(web, path, token="ags_not-a-real-key") == 4401
    assert ws_close_code(web, path, token=key, cookie=session_cookie(user), origin=web) == 4401


def test_unknown_path_is_4404(web):
    key = api_token_create(user=make_user())[1]
    assert ws_close_code(web, "/ws/nothing-here/", token=key) == 4404


@pytest.fixture(scope="module")
def two_capped_webs(django_db_setup: None) -> Iterator[tuple[str, str]]:
    env = child_env(AGENT_MAX_WS_PER_USER="2")
    with asgi_server(env, name="web-a") as (a, _), asgi_server(env, name="web-b") as (b, _):
        yield a, b


def test_cap_counts_sockets_across_processes_and_frees_a_slot_on_close(two_capped_webs):
    web_a, web_b = two_capped_webs
    user, other = make_user(), make_user()
    key, other_key = api_token_create(user=user)[1], api_token_create(user=other)[1]
    task = make_task(user)
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(ws_connect(web_a, "/ws/dashboard/", token=key))
        second = stack.enter_context(ws_connect(web_b, f"/ws/tasks/{task.pk}/", token=key))
        assert accepted(second)
        assert ws_close_code(web_a, "/ws/dashboard/", token=key) == 4429
        assert ws_close_code(web_b, f"/ws/tasks/{task.pk}/", token=key) == 4429
        with ws_connect(web_a, f"/ws/tasks/{make_task(other).pk}/", token=other_key) as ws:
            assert accepted(ws), "the cap is per user"

        first.close()
        # The server releases the slot when it sees the close, a moment later.
        wait_until(lambda: socket_accepted(web_b, task.pk, key), 10, "a slot to free")


def socket_accepted(web: str, task_id: int, key: str) -> bool:
    with ws_connect(web, f"/ws/tasks/{task_id}/", token=key) as ws:
        try:
            return accepted(ws)
        except ConnectionClosed:
            return False


def test_expired_slots_of_a_dead_process_do_not_count(settings):
    settings.AGENT_MAX_WS_PER_USER = 1
    user_id = 10**12  # no such user: only the Redis set matters here
    key = ws_connections.slot_key(user_id)
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(key)
    # A slot left by a web process that died: its expiry is in the past.
    client.zadd(key, {"specific.dead!1": time.time() - 1})

    async def scenario() -> tuple[bool, bool, int]:
        first = await ws_connections.acquire_slot(user_id=user_id, channel_name="live!1")
        second = await ws_connections.acquire_slot(user_id=user_id, channel_name="live!2")
        count = await ws_connections.open_slots(user_id=user_id)
        await ws_connections.release_slot(user_id=user_id, channel_name="live!1")
        return first, second, count

    assert asyncio.run(scenario()) == (True, False, 1)
