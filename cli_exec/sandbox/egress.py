"""The egress proxy: what a sandboxed run may reach besides the model, by allow-list.

Speaks HTTP proxy (CONNECT for TLS, absolute-form requests for plain HTTP). A host must
be on the run's list; every address it resolves to must be public unless that address is
itself listed, so a listed name cannot be pointed at the worker's loopback or private
network (DNS rebinding included: we connect to the address we checked). A refusal is an
HTTP 403 whose body names the host and the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger(__name__)

MAX_HEAD_BYTES = 64 * 1024
CONNECT_TIMEOUT_S = 10.0
HEAD_TIMEOUT_S = 30.0
_CHUNK = 65536
_DEFAULT_PORTS = frozenset({80, 443})
_HOP = frozenset({"proxy-connection", "proxy-authorization", "connection", "keep-alive"})
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(Exception):
    """The connection is not allowed; the message says why, for the agent to read."""


@dataclass(frozen=True)
class AllowEntry:
    host: str  # lower case; "*.example.com" matches subdomains
    port: int | None  # None: the standard web ports, 80 and 443

    @classmethod
    def parse(cls, text: str) -> AllowEntry:
        text = text.strip().lower()
        if not text:
            raise ValueError("an empty allow-list entry")
        host, port = _split_host_port(text)
        return cls(host.rstrip("."), port)

    def matches(self, host: str, port: int) -> bool:
        if self.port is None and port not in _DEFAULT_PORTS:
            return False
        if self.port is not None and port != self.port:
            return False
        if self.host.startswith("*."):
            return host.endswith(self.host[1:])
        return host == self.host

    def literal_address(self) -> IpAddress | None:
        with contextlib.suppress(ValueError):
            return ipaddress.ip_address(self.host)
        return None


def _split_host_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):  # [v6]:port
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port)
    return text, None


@dataclass(frozen=True)
class EgressPolicy:
    entries: tuple[AllowEntry, ...]

    @classmethod
    def from_hosts(cls, hosts: Sequence[str]) -> EgressPolicy:
        return cls(tuple(AllowEntry.parse(host) for host in hosts if host.strip()))

    def check_name(self, host: str, port: int) -> None:
        if not any(entry.matches(host, port) for entry in self.entries):
            raise Refused(f"{host}:{port} is not on the sandbox's allow-list")

    def permitted(self, address: IpAddress, port: int) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address.is_global and not address.is_multicast:
            return True
        # Loopback, private, link-local, shared or reserved: only when listed as such.
        return any(
            entry.literal_address() == address and entry.matches(str(address), port)
            for entry in self.entries
        )


async def resolve_permitted(policy: EgressPolicy, host: str, port: int) -> list[str]:
    """The addresses to connect to; Refused when the host is not allowed."""
    policy.check_name(host, port)
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise Refused(f"{host} does not resolve ({exc.strerror})") from exc
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    allowed = [a for a in addresses if policy.permitted(ipaddress.ip_address(a), port)]
    if not allowed:
        raise Refused(
            f"{host} resolves to a loopback or private address ({', '.join(addresses)}) "
            "that is not on the allow-list"
        )
    return allowed


@dataclass(frozen=True)
class ProxyRequest:
    method: str
    host: str
    port: int
    head: bytes  # what to send upstream first (empty for CONNECT)


def parse_head(head: bytes) -> ProxyRequest:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ValueError("not an HTTP request line")
    method, target, version = parts
    if method == "CONNECT":
        host, port = _split_host_port(target.lower())
        if port is None:
            raise ValueError("CONNECT needs host:port")
        return ProxyRequest(method, host.rstrip("."), port, b"")
    scheme, sep, rest = target.partition("://")
    if not sep or scheme.lower() != "http":
        raise ValueError("only CONNECT and absolute http:// requests go through this proxy")
    authority, _, path = rest.partition("/")
    host, port = _split_host_port(authority.lower())
    # Origin-form upstream, one request per connection: the client reuses a proxy
    # connection for any host, which must not reach this one's server.
    headers = [
        line for line in lines[1:] if line and line.split(":", 1)[0].strip().lower() not in _HOP
    ]
    rewritten = [f"{method} /{path} {version}", *headers, "Connection: close", "", ""]
    return ProxyRequest(method, host.rstrip("."), port or 80, "\r\n".join(rewritten).encode())


@dataclass
class EgressProxy:
    """One run's proxy: `handle` serves a connection; `close()` cuts every open tunnel."""

    policy: EgressPolicy
    label: str = ""
    writers: set[asyncio.StreamWriter] = field(default_factory=set)
    refusals: list[str] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
        except asyncio.LimitOverrunError:
            await _answer(writer, 431, "request head too large")
            return
        try:
            request = parse_head(head)
        except ValueError as exc:
            await _answer(writer, 400, str(exc))
            return
        try:
            addresses = await resolve_permitted(self.policy, request.host, request.port)
        except Refused as exc:
            reason = str(exc)
            self.refusals.append(reason)
            log.warning(
                "egress_refused", run=self.label, host=request.host, port=request.port,
                reason=reason,
            )  # fmt: skip
            await _answer(writer, 403, f"agentsite sandbox refused the connection: {reason}")
            return
        try:
            upstream_reader, upstream_writer = await self._connect(addresses, request.port)
        except OSError as exc:
            await _answer(writer, 502, f"{request.host}:{request.port} is unreachable: {exc}")
            return
        self.writers.add(upstream_writer)
        try:
            if request.method == "CONNECT":
                writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                await writer.drain()
            else:
                upstream_writer.write(request.head)
            await asyncio.gather(_pump(reader, upstream_writer), _pump(upstream_reader, writer))
        finally:
            self.writers.discard(upstream_writer)
            upstream_writer.close()

    async def _connect(
        self, addresses: list[str], port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        last = OSError("no address")
        for address in addresses:
            try:
                return await asyncio.wait_for(
                    asyncio.open_connection(address, port), CONNECT_TIMEOUT_S
                )
            except TimeoutError:
                last = OSError(f"connecting to {address} timed out")
            except OSError as exc:
                last = exc
        raise last

    def close(self) -> None:
        for writer in list(self.writers):
            writer.close()
        self.writers.clear()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def _answer(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    reasons = {
        400: "Bad Request",
        403: "Forbidden",
        431: "Request Header Fields Too Large",
        502: "Bad Gateway",
    }
    body = (message + "\n").encode()
    writer.write(
        f"HTTP/1.1 {status} {reasons[status]}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    with contextlib.suppress(ConnectionError):
        await writer.drain()
