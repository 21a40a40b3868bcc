"""The model gateway: the only way a sandboxed CLI reaches the model API.

The CLI inside holds a per-run token, never the real credential. Each run gets its own
gateway listener (a unix socket bound into its sandbox); it accepts that run's token
only while the run lives, swaps in the real credential and streams the upstream answer
back unchanged, chunk by chunk as it arrives (SSE must not be buffered). HTTP/1.1 is
parsed by h11; upstream calls go through one shared httpx client.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
from dataclasses import dataclass, field

import h11
import httpx
import structlog

log = structlog.get_logger(__name__)

DEFAULT_UPSTREAM = "https://api.anthropic.com"
MAX_REQUEST_BYTES = 32 * 1_048_576
_READ_SIZE = 65536
# Headers that describe one hop, or carry a credential we replace; never forwarded.
_REQUEST_DROP = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "x-api-key",
        "authorization",
        "cookie",
    }
)
_RESPONSE_DROP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "upgrade", "trailer", "set-cookie"}
)


@dataclass(frozen=True)
class ModelCredential:
    """The real credential, held by the worker: an API key, or an OAuth token."""

    api_key: str | None = None
    oauth_token: str | None = None

    def headers(self) -> dict[str, str]:
        if self.oauth_token:
            return {"authorization": f"Bearer {self.oauth_token}"}
        if self.api_key:
            return {"x-api-key": self.api_key}
        return {}

    @property
    def token_variable(self) -> str:
        """The CLI variable that carries the per-run token, so the CLI sends the same
        kind of credential (and the same beta headers) it would send with the real one."""
        return "CLAUDE_CODE_OAUTH_TOKEN" if self.oauth_token else "ANTHROPIC_API_KEY"


def new_run_token() -> str:
    return f"sk-agentsite-run-{secrets.token_urlsafe(32)}"


class _TooLarge(Exception):
    pass


@dataclass(frozen=True)
class _Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class RunGateway:
    """One run's gateway; `revoke()` makes its token worthless at once."""

    token: str
    upstream: str
    credential: ModelCredential
    client: httpx.AsyncClient
    label: str = ""
    active: bool = True
    requests: int = 0
    writers: set[asyncio.StreamWriter] = field(default_factory=set)

    def revoke(self) -> None:
        self.active = False

    def close(self) -> None:
        self.revoke()
        for writer in list(self.writers):
            writer.close()
        self.writers.clear()

    def refusal(self, headers: dict[str, str]) -> str | None:
        presented = _presented_token(headers)
        if presented is None:
            return "missing token"
        if not hmac.compare_digest(presented.encode(), self.token.encode()):
            return "wrong token"
        if not self.active:
            return "expired token"
        return None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection: requests one after another (keep-alive) until it closes."""
        self.writers.add(writer)
        connection = h11.Connection(h11.SERVER)
        try:
            while True:
                try:
                    request = await _read_request(connection, reader)
                except _TooLarge:
                    await self._error(connection, writer, 413, "request_too_large",
                                      "model gateway: request too large")  # fmt: skip
                    return
                if request is None:
                    return
                await self._answer(connection, writer, request)
                if connection.our_state is not h11.DONE:
                    return
                connection.start_next_cycle()
        except (h11.ProtocolError, ConnectionError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    async def _answer(
        self, connection: h11.Connection, writer: asyncio.StreamWriter, request: _Request
    ) -> None:
        refusal = self.refusal(request.headers)
        if refusal is not None:
            # The reason, never the presented value: a wrong token may be a real secret.
            path = request.target.split("?", 1)[0]
            log.warning("gateway_refused", run=self.label, reason=refusal, path=path)
            await self._error(
                connection, writer, 401, "authentication_error", f"model gateway: {refusal}"
            )
            return
        if not request.target.startswith("/"):
            await self._error(connection, writer, 400, "invalid_request_error",
                              "model gateway: origin-form request targets only")  # fmt: skip
            return
        self.requests += 1
        outgoing = {k: v for k, v in request.headers.items() if k not in _REQUEST_DROP}
        outgoing.update(self.credential.headers())
        upstream = self.client.build_request(
            request.method,
            self.upstream.rstrip("/") + request.target,
            headers=outgoing,
            content=request.body,
        )
        try:
            response = await self.client.send(upstream, stream=True)
        except httpx.HTTPError as exc:
            log.warning("gateway_upstream_unreachable", run=self.label, error=type(exc).__name__)
            await self._error(
                connection, writer, 502, "api_error", "model gateway: the model API is unreachable"
            )
            return
        try:
            headers = [
                (name, value)
                for name, value in response.headers.raw
                if name.decode("latin-1").lower() not in _RESPONSE_DROP
            ]
            writer.write(connection.send(h11.Response(status_code=response.status_code,
                                                      headers=headers)))  # fmt: skip
            # Raw bytes as they come: no decoding, no re-chunking, no buffering.
            async for chunk in response.aiter_raw():
                writer.write(connection.send(h11.Data(data=chunk)))
                await writer.drain()
            writer.write(connection.send(h11.EndOfMessage()))
            await writer.drain()
        except httpx.HTTPError as exc:
            # Headers are out: cut the connection, so the CLI sees a broken stream.
            log.warning("gateway_upstream_cut", run=self.label, error=type(exc).__name__)
            writer.close()
        finally:
            await response.aclose()

    async def _error(
        self,
        connection: h11.Connection,
        writer: asyncio.StreamWriter,
        status: int,
        error_type: str,
        message: str,
    ) -> None:
        # The Messages API's own error shape, so the CLI reports it like any API error.
        body = json.dumps({"type": "error", "error": {"type": error_type, "message": message}})
        payload = body.encode()
        headers = [("content-type", "application/json"), ("content-length", str(len(payload)))]
        writer.write(connection.send(h11.Response(status_code=status, headers=headers)))
        writer.write(connection.send(h11.Data(data=payload)))
        writer.write(connection.send(h11.EndOfMessage()))
        await writer.drain()


def _presented_token(headers: dict[str, str]) -> str | None:
    if "x-api-key" in headers:
        return headers["x-api-key"]
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value if scheme.lower() == "bearer" and value else None


async def _read_request(
    connection: h11.Connection, reader: asyncio.StreamReader
) -> _Request | None:
    """The next whole request on the connection, or None when the client closed it."""
    head: h11.Request | None = None
    body: list[bytes] = []
    size = 0
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(_READ_SIZE)
            connection.receive_data(data)
            if not data and head is None:
                return None
            continue
        if isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            size += len(event.data)
            if size > MAX_REQUEST_BYTES:
                raise _TooLarge
            body.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage) and head is not None:
            headers = {
                name.decode("latin-1").lower(): value.decode("latin-1")
                for name, value in head.headers
            }
            return _Request(
                head.method.decode("ascii"), head.target.decode("latin-1"), headers, b"".join(body)
            )
        elif isinstance(event, h11.ConnectionClosed):
            return None
