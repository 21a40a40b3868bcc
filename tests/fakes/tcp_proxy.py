"""A loopback TCP proxy that can cut a service off from its clients, without touching the
service: forward (`pass`), reset every connection and every new one (`refuse`), or go
silent while holding everything (`blackhole`, a hung server or a partition; forwarding
resumes where it stopped when the mode goes back to `pass`).

Each connection is one thread that owns both of its sockets; mode changes are flags the
threads apply, and `set_mode` returns once every connection has applied the new one.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import select
import socket
import struct
import threading
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

# How often a connection thread looks at the mode while its sockets are quiet.
POLL_S = 0.02
# A mode change reaches every thread within a poll or a send timeout; this is generous.
APPLY_TIMEOUT_S = 10.0
UPSTREAM_CONNECT_TIMEOUT_S = 5.0
CHUNK = 65536


class ProxyMode(enum.StrEnum):
    PASS = "pass"
    REFUSE = "refuse"
    BLACKHOLE = "blackhole"


class _Closing(Exception):
    """The proxy is stopping or refusing: the connection ends with a reset."""


def _reset(sock: socket.socket | None) -> None:
    """Close with an RST (SO_LINGER 0), as a crashed or restarted server's kernel does."""
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@dataclass(eq=False)
class _Connection:
    client: socket.socket
    upstream: socket.socket | None = None
    applied: int = 0  # the last mode generation this connection's thread has applied
    done: bool = False
    # Bytes read from one side and not yet delivered to the other (held in a blackhole).
    pending: dict[str, bytes] = field(default_factory=lambda: {"up": b"", "down": b""})


class TcpProxy:
    """Listens on 127.0.0.1:<port> and forwards to `upstream` (host, port)."""

    def __init__(self, upstream_host: str, upstream_port: int, name: str = "proxy") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.name = name
        self._cond = threading.Condition()
        self._mode = ProxyMode.PASS
        self._generation = 0
        self._stopping = False
        self._connections: set[_Connection] = set()
        self._threads: set[threading.Thread] = set()
        self._ids = itertools.count(1)
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self.accepted = 0  # connections accepted so far (tests read it to see clients came)

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(256)
        listener.settimeout(POLL_S * 5)
        self._listener = listener
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"{self.name}-accept", daemon=True
        )
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Reset every connection, stop every thread and close the listener."""
        with self._cond:
            self._stopping = True
            self._generation += 1
            self._cond.notify_all()
        if self._acceptor is not None:
            self._acceptor.join(APPLY_TIMEOUT_S)
        with self._cond:
            threads = list(self._threads)
        for thread in threads:
            thread.join(APPLY_TIMEOUT_S)
        if self._listener is not None:
            self._listener.close()
        alive = [t.name for t in threads if t.is_alive()]
        if alive or (self._acceptor is not None and self._acceptor.is_alive()):
            raise RuntimeError(f"{self.name}: threads still running after stop: {alive}")

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._listener is not None, "the proxy is not started"  # noqa: S101
        return int(self._listener.getsockname()[1])

    def url(self, url: str) -> str:
        """`url` (postgres://…, redis://…, amqp://…) with its host and port made ours."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    @property
    def mode(self) -> ProxyMode:
        return self._mode

    @property
    def open_connections(self) -> int:
        with self._cond:
            return sum(1 for c in self._connections if not c.done)

    def set_mode(self, mode: ProxyMode) -> None:
        """Switch, and return once every connection has applied the switch: after
        `refuse` every old connection is reset, after `blackhole` none forwards a byte."""
        with self._cond:
            self._mode = ProxyMode(mode)
            self._generation += 1
            generation = self._generation
            self._cond.notify_all()
            applied = self._cond.wait_for(
                lambda: all(c.done or c.applied >= generation for c in self._connections),
                APPLY_TIMEOUT_S,
            )
        if not applied:
            raise RuntimeError(f"{self.name}: connections did not switch to {mode}")

    # --- threads --------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None  # noqa: S101
        while not self._stopping:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            if self._mode is ProxyMode.REFUSE:
                _reset(client)
                continue
            connection = _Connection(client)
            thread = threading.Thread(
                target=self._serve,
                args=(connection,),
                name=f"{self.name}-conn-{next(self._ids)}",
                daemon=True,
            )
            with self._cond:
                connection.applied = self._generation
                self._connections.add(connection)
                self._threads.add(thread)
            thread.start()

    def _serve(self, connection: _Connection) -> None:
        try:
            self._hold_while_blackholed(connection)
            connection.upstream = socket.create_connection(
                self.upstream, timeout=UPSTREAM_CONNECT_TIMEOUT_S
            )
            self._forward(connection)
        except (_Closing, OSError):
            pass
        finally:
            _reset(connection.client)
            _reset(connection.upstream)
            with self._cond:
                connection.done = True
                self._connections.discard(connection)
                self._threads.discard(threading.current_thread())
                self._cond.notify_all()

    def _apply_mode(self, connection: _Connection) -> ProxyMode:
        """Acknowledge the current mode; raises _Closing when the connection must end."""
        with self._cond:
            if self._stopping or self._mode is ProxyMode.REFUSE:
                raise _Closing
            if connection.applied != self._generation:
                connection.applied = self._generation
                self._cond.notify_all()
            return self._mode

    def _hold_while_blackholed(self, connection: _Connection) -> None:
        while self._apply_mode(connection) is ProxyMode.BLACKHOLE:
            with self._cond:
                self._cond.wait(POLL_S * 5)

    def _forward(self, connection: _Connection) -> None:
        client, upstream = connection.client, connection.upstream
        assert upstream is not None  # noqa: S101
        for sock in (client, upstream):
            sock.setblocking(False)
        peers = {client: (upstream, "up"), upstream: (client, "down")}
        open_for_reading = {client, upstream}
        while open_for_reading or any(connection.pending.values()):
            self._hold_while_blackholed(connection)
            # Deliver what is held first (data read just before a blackhole began).
            writers = [
                peers[src][0] for src in (client, upstream) if connection.pending[peers[src][1]]
            ]
            readers = [
                s for s in open_for_reading if not connection.pending[peers[s][1]]
            ]  # read a side again only once its last chunk is delivered
            readable, writable, _ = select.select(readers, writers, [], POLL_S)
            for dst in writable:
                direction = "down" if dst is client else "up"
                sent = dst.send(connection.pending[direction])
                connection.pending[direction] = connection.pending[direction][sent:]
            if self._apply_mode(connection) is ProxyMode.BLACKHOLE:
                continue  # what is readable waits in the kernel until `pass`
            for src in readable:
                dst, direction = peers[src]
                data = src.recv(CHUNK)
                if not data:
                    # Half-close: the other side may still answer.
                    open_for_reading.discard(src)
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    continue
                connection.pending[direction] += data
            if not open_for_reading and not any(connection.pending.values()):
                return
