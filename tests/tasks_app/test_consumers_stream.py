"""Task and dashboard sockets against a real uvicorn server, fed the way workers feed them.

Events are written in this process with append_events and lifecycle.transition, exactly
as a worker writes them; they reach the server's consumers through Redis after commit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from tasks_app.models import Task, TaskEvent, TaskStatus
from tasks_app.services import broadcast
from tasks_app.services.events import NewEvent, append_events
from tasks_app.services.lifecycle import claim_task, transition
from tasks_app.services.tokens import api_token_create
from tests.factories import make_task, make_user
from tests.live import (
    asgi_server,
    child_env,
    wait_until_dashboard_live,
    ws_close_code,
    ws_connect,
    ws_recv,
    ws_recv_until,
    ws_recv_until_closed,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def web(django_db_setup: None) -> Iterator[str]:
    with asgi_server(child_env(AGENT_MAX_WS_PER_USER="250")) as (url, _):
        yield url


def running_task(owner) -> Task:
    task = make_task(owner)
    assert claim_task(task, worker="test-worker")
    return task


def say(task: Task, *texts: str) -> None:
    events = [NewEvent("text", {"text": t, "partial": True}) for t in texts]
    append_events(task, events, attempt=task.attempts, running_attempt=task.attempts)


def finish(task: Task, status: TaskStatus = TaskStatus.SUCCEEDED) -> None:
    assert transition(task, to=status, from_statuses=[TaskStatus.RUNNING])


def is_status(message: dict) -> bool:
    return message["type"] == "status"


def seqs(messages: list[dict]) -> list[int]:
    return [m["seq"] for m in messages if m["type"] == "event"]


def token_for(user) -> str:
    return api_token_create(user=user)[1]


def test_client_joining_mid_stream_gets_rest_then_live_events_then_end(web):
    user = make_user()
    task = running_task(user)  # seq 1: status running
    say(task, "a", "b", "c", "d", "e")  # seqs 2-6
    with ws_connect(web, f"/ws/tasks/{task.pk}/?after=3", token=token_for(user)) as ws:
        replay = ws_recv_until(ws, is_status)
        assert seqs(replay) == [4, 5, 6]
        assert [m["payload"]["text"] for m in replay[:-1]] == ["c", "d", "e"]
        assert replay[-1]["status"] == "running" and replay[-1]["task"]["id"] == task.pk

        say(task, "f")
        say(task, "g", "h")
        finish(task)
        live, code = ws_recv_until_closed(ws)

    assert seqs(live) == [7, 8, 9, 10]
    assert live[3]["kind"] == "status" and live[3]["payload"] == {"status": "succeeded"}
    assert live[4]["type"] == "status" and live[4]["status"] == "succeeded"
    assert live[4]["task"]["status"] == "succeeded"
    assert live[5] == {"type": "end", "status": "succeeded"}
    assert len(live) == 6 and code == 1000


def preview(task: Task, *, after: int, text: str) -> dict:
    payload = {"text": text, "partial": True}
    broadcast.task_preview(task.pk, after=after, kind="text", payload=payload)
    return {"type": "preview", "after": after, "kind": "text", "payload": payload}


def test_a_preview_reaches_only_a_client_that_has_every_event_before_it(web):
    user = make_user()
    task = running_task(user)  # seq 1
    say(task, "a")  # seq 2
    with ws_connect(web, f"/ws/tasks/{task.pk}/", token=token_for(user)) as ws:
        assert seqs(ws_recv_until(ws, is_status)) == [1, 2]
        preview(task, after=1, text="stale")  # the client already has event 2: dropped
        shown = preview(task, after=2, text="b")
        assert ws_recv(ws) == shown
        # A stored event whose push never came: the client gets it before the preview.
        TaskEvent.objects.create(
            task=task, seq=3, attempt=1, kind="text", payload={"text": "bc", "partial": True}
        )
        Task.objects.filter(pk=task.pk).update(last_seq=3)
        shown = preview(task, after=3, text="d")
        got = ws_recv_until(ws, lambda m: m["type"] == "preview")
        assert seqs(got) == [3] and got[0]["payload"]["text"] == "bc" and got[-1] == shown
        say(task, "de")
        finish(task)
        live, code = ws_recv_until_closed(ws)
    assert seqs(live) == [4, 5] and all(m["type"] != "preview" for m in live)
    assert code == 1000


def test_socket_on_finished_task_replays_everything_then_ends(web):
    user = make_user()
    task = running_task(user)
    say(task, "hello")
    finish(task, TaskStatus.FAILED)
    with ws_connect(web, f"/ws/tasks/{task.pk}/", token=token_for(user)) as ws:
        messages, code = ws_recv_until_closed(ws)
    assert seqs(messages) == [1, 2, 3]
    assert messages[0]["kind"] == "status" and messages[0]["payload"]["status"] == "running"
    assert messages[3]["type"] == "status" and messages[3]["status"] == "failed"
    assert messages[4] == {"type": "end", "status": "failed"}
    assert code == 1000


def test_socket_after_the_last_event_of_finished_task_just_ends(web):
    user = make_user()
    task = running_task(user)
    finish(task, TaskStatus.CANCELLED)
    with ws_connect(web, f"/ws/tasks/{task.pk}/?after=2", token=token_for(user)) as ws:
        messages, code = ws_recv_until_closed(ws)
    assert [m["type"] for m in messages] == ["status", "end"]
    assert messages[1]["status"] == "cancelled" and code == 1000


@pytest.mark.parametrize("after", ["-1", "abc", "1.5", "", "99999999999", "1&after=2"])
def test_invalid_after_is_closed_4400(web, after):
    user = make_user()
    task = running_task(user)
    path = f"/ws/tasks/{task.pk}/?after={after}"
    assert ws_close_code(web, path, token=token_for(user)) == 4400


def test_users_see_only_their_own_tasks(web):
    alice, bob = make_user(), make_user()
    alice_task, bob_task = running_task(alice), running_task(bob)
    alice_key, bob_key = token_for(alice), token_for(bob)

    assert ws_close_code(web, f"/ws/tasks/{bob_task.pk}/", token=alice_key) == 4404
    assert ws_close_code(web, f"/ws/tasks/{alice_task.pk}/", token=bob_key) == 4404
    assert ws_close_code(web, "/ws/tasks/999999999/", token=alice_key) == 4404

    with (
        ws_connect(web, f"/ws/tasks/{alice_task.pk}/?after=1", token=alice_key) as alice_ws,
        ws_connect(web, f"/ws/tasks/{bob_task.pk}/?after=1", token=bob_key) as bob_ws,
    ):
        ws_recv_until(alice_ws, is_status)
        ws_recv_until(bob_ws, is_status)
        say(alice_task, "for alice")
        say(bob_task, "for bob")
        finish(alice_task)
        finish(bob_task)
        alice_got, _ = ws_recv_until_closed(alice_ws)
        bob_got, _ = ws_recv_until_closed(bob_ws)

    assert [m["payload"] for m in alice_got if m["type"] == "event"][0]["text"] == "for alice"
    assert [m["payload"] for m in bob_got if m["type"] == "event"][0]["text"] == "for bob"
    assert {m["task"]["id"] for m in alice_got + bob_got if is_status(m)} == {
        alice_task.pk,
        bob_task.pk,
    }
    assert all(m["task"]["id"] == alice_task.pk for m in alice_got if is_status(m))


def test_dashboard_gets_status_changes_of_own_tasks_only(web):
    alice, bob = make_user(), make_user()
    alice_task = make_task(alice)
    bob_task = make_task(bob)
    with ws_connect(web, "/ws/dashboard/", token=token_for(alice)) as ws:
        markers = wait_until_dashboard_live(ws, alice)
        claim_task(bob_task, worker="w")
        claim_task(alice_task, worker="w")
        finish(bob_task)
        finish(alice_task)
        got = ws_recv_until(ws, lambda m: m["status"] == "succeeded")

    got = [m for m in got if m["task"]["id"] not in markers]
    assert [(m["task"]["id"], m["status"]) for m in got] == [
        (alice_task.pk, "running"),
        (alice_task.pk, "succeeded"),
    ]
    assert all(m["type"] == "status" for m in got)
    assert got[-1]["task"]["prompt"] == alice_task.prompt


def test_two_hundred_clients_on_one_task_each_get_every_event(web):
    user = make_user()
    task = running_task(user)
    say(task, "before")
    key = token_for(user)
    with contextlib.ExitStack() as stack:
        clients = [
            stack.enter_context(ws_connect(web, f"/ws/tasks/{task.pk}/", token=key))
            for _ in range(200)
        ]
        for ws in clients:
            ws_recv_until(ws, is_status)
        for i in range(10):
            say(task, f"live {i}", f"more {i}")
        finish(task)
        for ws in clients:
            messages, code = ws_recv_until_closed(ws, timeout_s=60)
            assert seqs(messages) == list(range(3, 24))
            assert messages[-1] == {"type": "end", "status": "succeeded"} and code == 1000


def test_pushed_event_is_exactly_what_a_replay_reads(web):
    user = make_user()
    task = running_task(user)
    key = token_for(user)
    with ws_connect(web, f"/ws/tasks/{task.pk}/?after=1", token=key) as ws:
        ws_recv_until(ws, is_status)
        say(task, "nul \x00 inside")
        pushed = ws_recv_until(ws, lambda m: m.get("seq") == 2)[-1]
    with ws_connect(web, f"/ws/tasks/{task.pk}/?after=1", token=key) as ws:
        replayed = ws_recv_until(ws, is_status)[0]
    assert pushed == replayed
    assert pushed["payload"]["text"] == "nul \ufffd inside"


def test_batch_too_large_to_push_inline_still_arrives_whole(web):
    user = make_user()
    task = running_task(user)
    big = "x" * (300 * 1024)
    with ws_connect(web, f"/ws/tasks/{task.pk}/?after=1", token=token_for(user)) as ws:
        ws_recv_until(ws, is_status)
        say(task, big, "after it")
        got = ws_recv_until(ws, lambda m: m.get("seq") == 3)
    assert [(m["seq"], len(m["payload"]["text"])) for m in got] == [(2, len(big)), (3, 8)]
