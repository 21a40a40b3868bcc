"""A minimal asyncio HTTP/1.1 client: one request per connection, bytes built in advance.

Load generators share the machine with the server; a full client library would spend
as much CPU per request as the views it measures, so this one does almost nothing.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 80)


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    seconds: float  # from before connecting to the last byte of the body

    def json(self) -> Any:
        return json.loads(self.body)


def build_request(
    method: str, path: str, endpoint: Endpoint, headers: dict[str, str], body: bytes = b""
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {endpoint.host}:{endpoint.port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin1") + body


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return bytes(out)


async def exchange(endpoint: Endpoint, request: bytes, timeout_s: float = 30.0) -> Answer:
    """Send one prepared request on a new connection and read the whole answer."""
    started = time.perf_counter()
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (h.partition(b":") for h in head.split(b"\r\n")[1:])
            }
            if b"content-length" in headers:
                body = await reader.readexactly(int(headers[b"content-length"]))
            else:
                body = await reader.read()
                if headers.get(b"transfer-encoding") == b"chunked":
                    body = _dechunk(body)
        finally:
            writer.close()
    return Answer(status, body, time.perf_counter() - started)


def _parse(raw: bytes) -> tuple[int, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"\r\ntransfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return status, body


def exchange_blocking(endpoint: Endpoint, request: bytes, timeout_s: float = 30.0) -> Answer:
    """The same exchange with a plain blocking socket, for one request at a time."""
    started = time.perf_counter()
    chunks = []
    with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout_s) as sock:
        sock.sendall(request)
        while data := sock.recv(65536):
            chunks.append(data)
    status, body = _parse(b"".join(chunks))
    return Answer(status, body, time.perf_counter() - started)


def api_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}", "Content-Type": "application/json"}


def post_task(endpoint: Endpoint, token: str, prompt: str) -> int:
    """POST /api/tasks/ from this thread; the new task's id."""
    body = json.dumps({"prompt": prompt}).encode()
    request = build_request("POST", "/api/tasks/", endpoint, api_headers(token), body)
    answer = exchange_blocking(endpoint, request)
    if answer.status != 201:
        raise RuntimeError(f"POST /api/tasks/ answered {answer.status}: {answer.body!r}")
    return int(answer.json()["id"])


async def post_tasks(
    endpoint: Endpoint, token: str, prompts: list[str], concurrency: int
) -> list[int]:
    """POST /api/tasks/ for every prompt, `concurrency` at a time; the new task ids in order."""
    requests = [
        build_request(
            "POST",
            "/api/tasks/",
            endpoint,
            api_headers(token),
            json.dumps({"prompt": prompt}).encode(),
        )
        for prompt in prompts
    ]
    ids: list[int] = [0] * len(requests)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(requests)):
        queue.put_nowait(index)

    async def poster() -> None:
        while not queue.empty():
            index = queue.get_nowait()
            answer = await exchange(endpoint, requests[index])
            if answer.status != 201:
                raise RuntimeError(f"POST /api/tasks/ answered {answer.status}: {answer.body!r}")
            ids[index] = int(answer.json()["id"])

    await asyncio.gather(*(poster() for _ in range(concurrency)))
    return ids
