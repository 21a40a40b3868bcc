import asyncio

import httpx
import pytest

from agentsite.body_limit import BodySizeLimit
from tests.live import asgi_server, child_env


class RecordingApp:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope, receive, send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def call(app, headers, chunks):
    sent: list[dict] = []
    queue = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    read = 0

    async def receive():
        nonlocal read
        read += 1
        return queue.pop(0)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "headers": headers}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], read


def test_declared_length_over_limit_is_413_without_reading_the_body():
    inner = RecordingApp()
    status, reads = call(BodySizeLimit(inner, 10), [(b"content-length", b"11")], [b"x" * 11])
    assert (status, reads, inner.bodies) == (413, 0, [])


CHUNKED = [(b"transfer-encoding", b"chunked")]


def test_chunked_body_over_limit_is_413_and_stops_reading():
    inner = RecordingApp()
    status, reads = call(BodySizeLimit(inner, 10), CHUNKED, [b"x" * 6, b"x" * 6, b"x" * 6])
    assert (status, reads, inner.bodies) == (413, 2, [])


def test_body_within_limit_reaches_the_app_whole():
    inner = RecordingApp()
    status, _ = call(BodySizeLimit(inner, 10), CHUNKED, [b"abc", b"defg"])
    assert (status, inner.bodies) == (200, [b"abcdefg"])


def test_request_without_body_passes_straight_through():
    inner = RecordingApp()
    status, reads = call(BodySizeLimit(inner, 10), [], [b""])
    assert (status, reads, inner.bodies) == (200, 1, [b""])


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_real_server_refuses_an_oversized_body_with_413():
    with asgi_server(child_env(), name="web-body-limit") as (url, _):
        response = httpx.post(
            url + "/api/tasks/",
            content=b"x" * 3_000_000,
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 413
    assert "over the limit" in response.json()["detail"]
