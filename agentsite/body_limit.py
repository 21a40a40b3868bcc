"""ASGI middleware refusing request bodies over a limit before the app reads them.

Django's ASGI handler spools the whole body before any view runs, so a size check in
a view comes too late to protect memory and disk; this one answers 413 from the
Content-Length alone, and counts chunked bodies as they arrive.

The answer keeps the connection open: the server then discards the rest of the body as
it arrives. Closing with unread data would make the kernel reset the connection, and
the client would see a reset instead of the 413.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_413(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"The request body is over the limit of {limit} bytes."})
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})


def declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def is_chunked(scope: Scope) -> bool:
    return any(
        name == b"transfer-encoding" and b"chunked" in value.lower()
        for name, value in scope.get("headers", [])
    )


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = declared_length(scope)
        if length is not None and length > self.max_bytes:
            await send_413(send, self.max_bytes)
            return
        if length is None and is_chunked(scope):
            await self._buffer_chunked(scope, receive, send)
            return
        # A declared length is enforced by the server; no length and no chunking: no body.
        await self.app(scope, receive, send)

    async def _buffer_chunked(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read a body of unknown length up to the limit, then replay it to the app."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await send_413(send, self.max_bytes)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
