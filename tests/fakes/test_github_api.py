"""The fake GitHub REST API over plain HTTP: permissions, comments, auth, scripted faults,
robustness, and its control API in-process and as its own process."""

from __future__ import annotations

import json
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.fakes.conftest import FAKE_GITHUB_BOT, FAKE_GITHUB_TOKEN, FakeProcess
from tests.fakes.github_api import (
    ControlInputError,
    FakeGitHub,
    FakeGitHubControl,
    Fault,
)
from tests.fakes.http_base import ControlError
from tests.live import wait_until

REPO = "octo/widgets"
COMMENTS = f"/repos/{REPO}/issues/7/comments"
ANY_COMMENTS = "/repos/*/*/issues/*/comments"
ANY_PERMISSION = "/repos/*/*/collaborators/*/permission"
LEGACY_PERMISSION = {
    "admin": "admin",
    "maintain": "write",
    "write": "write",
    "triage": "read",
    "read": "read",
    "none": "none",
}


def _client(
    base_url: str, authorization: str | None = f"Bearer {FAKE_GITHUB_TOKEN}"
) -> httpx.Client:
    headers = {"accept": "application/vnd.github+json"}
    if authorization is not None:
        headers["authorization"] = authorization
    return httpx.Client(base_url=base_url, headers=headers, timeout=20)


@pytest.fixture
def github(fake_github: FakeGitHub) -> Iterator[httpx.Client]:
    with _client(fake_github.base_url) as client:
        yield client


def _permission_path(user: str, repo: str = REPO) -> str:
    return f"/repos/{repo}/collaborators/{user}/permission"


def _in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Runs `call` in a thread; the list gets its result or the exception it raised."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:  # handed to the test, which asserts on it
            outcome.append(exc)

    thread = threading.Thread(target=run, name="test-client")
    thread.start()
    return thread, outcome


def _fake_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("fake-github")]


# --- permissions ---------------------------------------------------------------------------


@pytest.mark.parametrize(("role", "permission"), list(LEGACY_PERMISSION.items()))
def test_permission_for_scripted_role_answers_legacy_permission_and_role_name(
    fake_github: FakeGitHub, github: httpx.Client, role: str, permission: str
) -> None:
    fake_github.set_permission(REPO, "alice", role)

    response = github.get(_permission_path("alice"))

    assert response.status_code == 200
    body = response.json()
    assert (body["permission"], body["role_name"]) == (permission, role)
    assert (body["user"]["login"], body["user"]["type"]) == ("alice", "User")


def test_permission_for_unknown_user_answers_404_by_default(
    fake_github: FakeGitHub, github: httpx.Client
) -> None:
    fake_github.set_permission(REPO, "alice", "admin")
    fake_github.set_permission("octo/other", "mallory", "admin")

    response = github.get(_permission_path("mallory"))

    assert response.status_code == 404
    assert response.json()["message"] == "Not Found"


def test_permission_for_unknown_user_answers_none_when_configured() -> None:
    with FakeGitHub(unknown_permission="none") as fake, _client(fake.base_url, None) as client:
        response = client.get(_permission_path("stranger"))

    assert response.status_code == 200
    body = response.json()
    assert (body["permission"], body["role_name"]) == ("none", "none")
    assert not any(body["user"]["permissions"].values())


# --- comments ------------------------------------------------------------------------------


def test_comment_create_edit_get_keeps_edit_history(
    fake_github: FakeGitHub, github: httpx.Client
) -> None:
    created = github.post(COMMENTS, json={"body": "Working on it"})
    comment_id = created.json()["id"]
    edited = github.patch(f"/repos/{REPO}/issues/comments/{comment_id}", json={"body": "Done"})
    fetched = github.get(f"/repos/{REPO}/issues/comments/{comment_id}")

    assert (created.status_code, edited.status_code, fetched.status_code) == (201, 200, 200)
    assert comment_id > 2**31  # like real ids; a 32-bit column must fail here too
    assert created.json()["user"] == fetched.json()["user"]
    assert (fetched.json()["user"]["login"], fetched.json()["user"]["type"]) == (
        FAKE_GITHUB_BOT,
        "Bot",
    )
    assert fetched.json()["html_url"] == (
        f"https://github.com/{REPO}/issues/7#issuecomment-{comment_id}"
    )
    assert fetched.json() == edited.json()
    (current,) = fake_github.comments(repo=REPO, number=7)
    assert (current["body"], current["history"]) == ("Done", ["Working on it"])


@pytest.mark.parametrize("repo", [REPO, "octo/other"], ids=["unknown-id", "other-repo"])
def test_comment_edit_of_missing_comment_answers_404(
    fake_github: FakeGitHub, github: httpx.Client, repo: str
) -> None:
    existing = github.post(COMMENTS, json={"body": "mine"}).json()["id"]
    comment_id = existing + 1 if repo == REPO else existing

    response = github.patch(f"/repos/{repo}/issues/comments/{comment_id}", json={"body": "x"})

    assert response.status_code == 404
    assert response.json()["message"] == "Not Found"
    assert [c["history"] for c in fake_github.comments()] == [[]]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, 'Invalid request.\n\n"body" wasn\'t supplied.'),
        ({"body": "x" * 65_537}, "Validation Failed"),
    ],
    ids=["missing", "too-long"],
)
def test_comment_with_bad_body_answers_422_and_creates_nothing(
    fake_github: FakeGitHub, github: httpx.Client, payload: dict[str, Any], message: str
) -> None:
    response = github.post(COMMENTS, json=payload)

    assert response.status_code == 422
    assert response.json()["message"] == message
    assert fake_github.comments() == []


def test_review_comment_reply_is_threaded_and_editable(
    fake_github: FakeGitHub, github: httpx.Client
) -> None:
    parent = fake_github.add_review_comment(REPO, 12, user="alice", body="@claude fix this")

    reply = github.post(
        f"/repos/{REPO}/pulls/12/comments/{parent['id']}/replies", json={"body": "On it"}
    )
    reply_id = reply.json()["id"]
    edited = github.patch(f"/repos/{REPO}/pulls/comments/{reply_id}", json={"body": "Done"})

    assert (reply.status_code, edited.status_code) == (201, 200)
    assert reply.json()["in_reply_to_id"] == parent["id"]
    assert reply.json()["html_url"] == f"https://github.com/{REPO}/pull/12#discussion_r{reply_id}"
    bodies = [(c["user"]["login"], c["body"]) for c in fake_github.comments(REPO, 12)]
    assert bodies == [("alice", "@claude fix this"), (FAKE_GITHUB_BOT, "Done")]


def test_review_reply_to_unknown_comment_answers_404(
    fake_github: FakeGitHub, github: httpx.Client
) -> None:
    issue_comment = github.post(COMMENTS, json={"body": "not a review comment"}).json()

    response = github.post(
        f"/repos/{REPO}/pulls/7/comments/{issue_comment['id']}/replies", json={"body": "x"}
    )

    assert response.status_code == 404


# --- authentication and headers ------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Basic {FAKE_GITHUB_TOKEN}"],
    ids=["missing", "wrong", "basic-scheme"],
)
def test_bad_credentials_answer_401_and_change_nothing(
    fake_github: FakeGitHub, authorization: str | None
) -> None:
    with _client(fake_github.base_url, authorization) as client:
        response = client.post(COMMENTS, json={"body": "sneaky"})

    assert response.status_code == 401
    assert response.json()["message"] == "Bad credentials"
    assert fake_github.comments() == []
    assert [r.status for r in fake_github.requests()] == [401]


@pytest.mark.parametrize("scheme", ["Bearer", "token"])
def test_token_is_accepted_with_bearer_and_token_schemes(
    fake_github: FakeGitHub, scheme: str
) -> None:
    with _client(fake_github.base_url, f"{scheme} {FAKE_GITHUB_TOKEN}") as client:
        response = client.post(COMMENTS, json={"body": "hello"})

    assert response.status_code == 201


def test_every_answer_carries_rate_limit_and_request_id_headers(
    fake_github: FakeGitHub, github: httpx.Client
) -> None:
    answers = [github.get(_permission_path("nobody")), github.post(COMMENTS, json={"body": "x"})]

    for response in answers:
        assert response.headers["content-type"] == "application/json; charset=utf-8"
        assert response.headers["x-ratelimit-limit"] == "5000"
        assert int(response.headers["x-ratelimit-reset"]) > 0
    remaining = [int(r.headers["x-ratelimit-remaining"]) for r in answers]
    assert remaining[0] - remaining[1] == 1
    request_ids = [r.headers["x-github-request-id"] for r in answers]
    assert request_ids == [r.request_id for r in fake_github.requests()]
    assert len(set(request_ids)) == 2


# --- scripted faults -----------------------------------------------------------------------


def test_scripted_502_twice_then_comment_is_created(
    fake_github: FakeGitHub, github: httpx.Client
) -> None:
    fake_github.fail("POST", COMMENTS, status=502, times=2)

    statuses = [github.post(COMMENTS, json={"body": "ack"}).status_code for _ in range(3)]

    assert statuses == [502, 502, 201]
    assert [c["body"] for c in fake_github.comments(REPO, 7)] == ["ack"]
    assert fake_github.stats()["faults_pending"] == 0


def test_scripted_403_rate_limit_carries_its_headers_and_message(
    fake_github: FakeGitHub, github: httpx.Client
) -> None:
    reset_at = 1_900_000_000
    fake_github.fail(
        "GET",
        ANY_PERMISSION,
        status=403,
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset_at)},
        body={"message": "API rate limit exceeded for installation ID 1."},
    )

    response = github.get(_permission_path("alice"))

    assert response.status_code == 403
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert response.headers["x-ratelimit-reset"] == str(reset_at)
    assert response.headers["x-ratelimit-limit"] == "5000"
    assert response.json()["message"].startswith("API rate limit exceeded")


def test_scripted_429_carries_retry_after_then_answers_normally(
    fake_github: FakeGitHub, github: httpx.Client
) -> None:
    fake_github.fail("POST", ANY_COMMENTS, status=429, headers={"retry-after": "1"})

    limited = github.post(COMMENTS, json={"body": "ack"})
    retried = github.post(COMMENTS, json={"body": "ack"})

    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "1"
    assert limited.json()["message"] == "Too Many Requests"
    assert retried.status_code == 201


def test_fault_pattern_matches_only_its_method_and_path_shape(
    fake_github: FakeGitHub, github: httpx.Client
) -> None:
    fake_github.fail("POST", ANY_COMMENTS, status=500, times=1)
    fake_github.set_permission(REPO, "alice", "write")

    permission = github.get(_permission_path("alice"))
    review_reply = github.post(f"/repos/{REPO}/pulls/7/comments/1/replies", json={"body": "x"})
    matched = github.post("/repos/other/repo/issues/99/comments", json={"body": "x"})

    assert (permission.status_code, review_reply.status_code, matched.status_code) == (
        200,
        404,
        500,
    )


def test_slow_reply_is_overtaken_by_a_later_request(
    fake_github: FakeGitHub, github: httpx.Client
) -> None:
    fake_github.slow("POST", COMMENTS, delay_s=60)

    def post_slow() -> httpx.Response:
        with _client(fake_github.base_url) as client:
            return client.post(COMMENTS, json={"body": "slow"})

    thread, outcome = _in_thread(post_slow)
    wait_until(lambda: fake_github.in_flight == 1, what="slow request in flight")
    fast = github.post(COMMENTS, json={"body": "fast"})
    slow_done_before_release = bool(outcome)
    fake_github.release()
    thread.join(20)

    assert fast.status_code == 201
    assert not slow_done_before_release
    assert [r.status_code for r in outcome] == [201]
    assert [c["body"] for c in fake_github.comments(REPO, 7)] == ["fast", "slow"]
    slow, quick = fake_github.requests("POST")
    assert slow.body == {"body": "slow"}
    assert slow.started_at < quick.started_at
    assert quick.ended_at is not None and slow.ended_at is not None
    assert quick.ended_at < slow.ended_at


def test_slow_reply_answers_normally_when_its_delay_is_over(
    fake_github: FakeGitHub, github: httpx.Client
) -> None:
    fake_github.set_permission(REPO, "alice", "write")
    fake_github.slow("GET", ANY_PERMISSION, delay_s=0.05)

    response = github.get(_permission_path("alice"))

    assert response.status_code == 200
    assert response.json()["permission"] == "write"


def test_release_lets_a_hung_request_answer_normally(
    fake_github: FakeGitHub, github: httpx.Client
) -> None:
    fake_github.hang("POST", ANY_COMMENTS)

    def post() -> httpx.Response:
        with _client(fake_github.base_url) as client:
            return client.post(COMMENTS, json={"body": "late"})

    thread, outcome = _in_thread(post)
    wait_until(lambda: fake_github.in_flight == 1, what="hung request in flight")
    fake_github.release()
    thread.join(20)

    assert [r.status_code for r in outcome] == [201]


def test_close_ends_a_hung_request_and_leaves_no_threads() -> None:
    fake = FakeGitHub()
    try:
        fake.hang("GET", f"/repos/{REPO}/issues/comments/*")

        def get() -> httpx.Response:
            with _client(fake.base_url, None) as client:
                return client.get(f"/repos/{REPO}/issues/comments/1")

        thread, outcome = _in_thread(get)
        wait_until(lambda: fake.in_flight == 1, what="hung request in flight")
        closer, _ = _in_thread(fake.close)
        closer.join(20)
        thread.join(20)
    finally:
        fake.close()

    assert not closer.is_alive()
    assert not thread.is_alive()
    assert [type(error) for error in outcome] == [httpx.RemoteProtocolError]
    assert _fake_threads() == []
    assert [r.status for r in fake.requests()] == [None]


def test_client_hanging_up_mid_delay_keeps_the_server_serving(
    fake_github: FakeGitHub, github: httpx.Client
) -> None:
    fake_github.slow("POST", COMMENTS, delay_s=60)
    url = urlsplit(fake_github.base_url)
    body = json.dumps({"body": "abandoned"})
    request = (
        f"POST {COMMENTS} HTTP/1.1\r\nhost: {url.netloc}\r\n"
        f"authorization: Bearer {FAKE_GITHUB_TOKEN}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n{body}"
    )
    with socket.create_connection((url.hostname, url.port), timeout=20) as sock:
        sock.sendall(request.encode())
        wait_until(lambda: fake_github.in_flight == 1, what="slow request in flight")

    wait_until(lambda: fake_github.in_flight == 0, what="server noticing the hang-up")
    after = github.post(COMMENTS, json={"body": "after"})

    assert after.status_code == 201
    assert [c["body"] for c in fake_github.comments()] == ["after"]
    assert [r.status for r in fake_github.requests()] == [None, 201]


def test_concurrent_comment_creation_gives_distinct_ids(fake_github: FakeGitHub) -> None:
    start = threading.Barrier(20)

    def create(n: int) -> int:
        with _client(fake_github.base_url) as client:
            start.wait(timeout=20)
            response = client.post(COMMENTS, json={"body": f"comment {n}"})
            assert response.status_code == 201
            return response.json()["id"]

    runs = [_in_thread(lambda n=n: create(n)) for n in range(20)]
    for thread, _ in runs:
        thread.join(30)

    ids = [outcome[0] for _, outcome in runs]
    assert all(isinstance(i, int) for i in ids), ids
    assert len(set(ids)) == 20
    assert sorted(c["id"] for c in fake_github.comments(REPO, 7)) == sorted(ids)
    assert fake_github.in_flight == 0


# --- fault (de)serialisation and the control API -------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault("POST", COMMENTS, status=403, headers={"x-ratelimit-remaining": "0"}, times=2),
        Fault("*", "/repos/*/*/issues/comments/*", hang=True),
        Fault("GET", ANY_PERMISSION, status=502, body="<html>unicorn</html>", delay_s=0.5),
    ],
)
def test_fault_dict_round_trip_gives_equal_fault(fault: Fault) -> None:
    assert Fault.from_dict(json.loads(json.dumps(fault.to_dict()))) == fault


@pytest.mark.parametrize(
    "raw",
    [
        ["GET", "/x"],
        {"method": "GET"},
        {"method": 1, "path": "/x"},
        {"method": "GET", "path": "/x", "delay_s": None},
        {"method": "GET", "path": "no-slash"},
        {"method": "GET", "path": "/x", "status": "502"},
        {"method": "GET", "path": "/x", "times": 0},
        {"method": "GET", "path": "/x", "colour": "red"},
    ],
)
def test_fault_from_bad_dict_raises(raw: Any) -> None:
    with pytest.raises(ControlInputError):
        Fault.from_dict(raw)


def test_control_api_drives_and_reads_the_fake_like_python(
    fake_github: FakeGitHub, github: httpx.Client
) -> None:
    control = FakeGitHubControl(fake_github.base_url)
    control.set_permission(REPO, "bob", "triage")
    control.fail("POST", COMMENTS, status=502)

    permission = github.get(_permission_path("bob")).json()
    statuses = [github.post(COMMENTS, json={"body": "ack"}).status_code for _ in range(2)]

    assert (permission["permission"], permission["role_name"]) == ("read", "triage")
    assert statuses == [502, 201]
    assert control.comments(REPO, 7) == fake_github.comments(REPO, 7)
    assert control.requests("POST") == fake_github.requests("POST")
    assert [r.status for r in control.requests(path_prefix=f"/repos/{REPO}/issues")] == [502, 201]
    assert control.stats() == {"in_flight": 0, "total": 3, "faults_pending": 0, "comments": 1}
    control.reset()
    assert (control.requests(), control.comments()) == ([], [])
    assert github.get(_permission_path("bob")).status_code == 404


def test_control_api_rejects_bad_input_with_400(fake_github: FakeGitHub) -> None:
    control = FakeGitHubControl(fake_github.base_url)

    with pytest.raises(ControlError, match="answered 400"):
        control.set_permission(REPO, "bob", "owner")
    with httpx.Client(base_url=fake_github.base_url, timeout=20) as client:
        bad_fault = client.post("/_fake/faults", json={"method": "GET", "path": "/x", "times": 0})
        unknown = client.post("/_fake/teleport", json={})

    assert bad_fault.status_code == 400
    assert unknown.status_code == 404
    assert fake_github.stats()["faults_pending"] == 0


@pytest.mark.integration
def test_process_mode_round_trip_through_control_api(fake_github_process: FakeProcess) -> None:
    control = FakeGitHubControl(fake_github_process.base_url)
    control.set_permission(REPO, "alice", "write")
    control.fail("POST", ANY_COMMENTS, status=502)

    with _client(fake_github_process.base_url) as client:
        permission = client.get(_permission_path("alice"))
        statuses = [client.post(COMMENTS, json={"body": "ack"}).status_code for _ in range(2)]
        comment_id = control.comments(REPO, 7)[0]["id"]
        edited = client.patch(f"/repos/{REPO}/issues/comments/{comment_id}", json={"body": "ok"})

    assert permission.json()["permission"] == "write"
    assert (statuses, edited.status_code) == ([502, 201], 200)
    (comment,) = control.comments(REPO, 7)
    assert comment["user"]["login"] == FAKE_GITHUB_BOT
    assert comment["history"] == ["ack"]
    assert [r.status for r in control.requests("POST")] == [502, 201]
    control.reset()
    assert control.comments() == []
    fake_github_process.popen.send_signal(signal.SIGTERM)
    assert fake_github_process.popen.wait(20) == 0


@pytest.mark.integration
def test_process_exits_on_sigterm_while_a_request_hangs(fake_github_process: FakeProcess) -> None:
    control = FakeGitHubControl(fake_github_process.base_url)
    control.hang("GET", ANY_PERMISSION)

    def get() -> httpx.Response:
        with _client(fake_github_process.base_url) as client:
            return client.get(_permission_path("alice"))

    thread, outcome = _in_thread(get)
    wait_until(lambda: control.stats()["in_flight"] == 1, what="hung request in flight")
    fake_github_process.popen.send_signal(signal.SIGTERM)

    assert fake_github_process.popen.wait(20) == 0
    thread.join(20)
    assert [type(error) for error in outcome] == [httpx.RemoteProtocolError]
