"""The web server keeps an idle connection open longer than clients keep one for reuse.

httpx reuses an idle connection for up to 5 s, and so did uvicorn keep one open: a
client sending its next request at the moment the server closed the connection got a
reset instead of an answer (the load test's `httpx.ReadError`). The server now waits
75 s, so a connection idle past the clients' 5 s still answers.
"""

from __future__ import annotations

import socket
import time

import pytest

from tests.live import asgi_server, child_env

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
CLIENT_KEEPALIVE_S = 5.0  # httpx's default keepalive_expiry
REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def answer(connection: socket.socket) -> bytes:
    """One response (headers and a Content-Length body) read off the connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionError(f"the server closed the connection after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += connection.recv(65536)
    return head


def test_a_connection_idle_past_the_clients_keepalive_still_answers():
    with asgi_server(child_env()) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(REQUEST)
            assert answer(connection).startswith(b"HTTP/1.1 200")
            time.sleep(CLIENT_KEEPALIVE_S + 1)
            connection.sendall(REQUEST)
            assert answer(connection).startswith(b"HTTP/1.1 200")
