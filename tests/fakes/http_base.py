"""HTTP plumbing the fake servers share: a 127.0.0.1 server in a daemon thread that can hang up
on every client, a quiet JSON request handler, the control-API client and the process entry."""

from __future__ import annotations

import itertools
import json
import logging
import select
import signal
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

logger = logging.getLogger(__name__)

# Handler threads only ever wait on sockets and on events close() sets, so this is generous.
JOIN_TIMEOUT_S = 5.0
# How often a paused reply looks for a vanished client; release() and close() wake it at once.
POLL_S = 0.05


class ClientGone(Exception):
    """The client hung up (or the fake is closing) before the reply was complete."""


class _TrackingHTTPServer(ThreadingHTTPServer):
    """Tracks connection sockets and threads so close() can end them and prove it did."""

    daemon_threads = True
    block_on_close = False
    # The default backlog of 5 overflows when 20 clients connect at once; Linux then drops the
    # SYN and the client only retries a second later.
    request_queue_size = 128

    def __init__(
        self, owner: Any, handler: type[BaseHTTPRequestHandler], *, port: int, name: str
    ) -> None:
        self.fake = owner
        self._name = name
        self._conn_lock = threading.Lock()
        self._conn_sockets: set[socket.socket] = set()
        self._conn_threads: set[threading.Thread] = set()
        self._conn_ids = itertools.count(1)
        super().__init__(("127.0.0.1", port), handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=f"{self._name}-conn-{next(self._conn_ids)}",
            daemon=True,
        )
        with self._conn_lock:
            self._conn_sockets.add(request)
            self._conn_threads.add(thread)
        thread.start()

    def _serve_connection(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except OSError as exc:
            # A client hanging up mid-reply is routine (SIGINT, timeouts, closed pools).
            logger.debug("connection from %s ended: %s", client_address, exc)
        finally:
            self.shutdown_request(request)
            with self._conn_lock:
                self._conn_sockets.discard(request)
                self._conn_threads.discard(threading.current_thread())

    def close_connections(self) -> list[threading.Thread]:
        """Hang up on every client; returns the threads that were serving them."""
        with self._conn_lock:
            sockets = list(self._conn_sockets)
            threads = list(self._conn_threads)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                logger.debug("socket already closed during fake shutdown")
        return threads


class BackgroundServer:
    """A ThreadingHTTPServer on 127.0.0.1 served from a daemon thread; handlers reach `owner`
    as `self.server.fake`. Threads are named `<name>-server` and `<name>-conn-N`."""

    def __init__(
        self, owner: Any, handler: type[BaseHTTPRequestHandler], *, port: int = 0, name: str
    ) -> None:
        self._httpd = _TrackingHTTPServer(owner, handler, port=port, name=name)
        host, bound_port = self._httpd.server_address[:2]
        self.base_url = f"http://{host}:{bound_port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{name}-server",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        """Stop accepting, hang up on every client and join every thread. The owner must first
        wake handlers that wait on its own events (releases, delays)."""
        self._httpd.shutdown()
        threads = self._httpd.close_connections()
        self._httpd.server_close()
        for thread in [*threads, self._thread]:
            thread.join(JOIN_TIMEOUT_S)
            if thread.is_alive():
                logger.warning("fake server thread %s did not stop", thread.name)


class FakeRequestHandler(BaseHTTPRequestHandler):
    """Quiet HTTP/1.1 handler with JSON replies and an interruptible pause."""

    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes; with Nagle on, the body waits for the client's
    # delayed ACK (~40 ms a reply on loopback).
    disable_nagle_algorithm = True

    @property
    def fake(self) -> Any:
        return self.server.fake  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet: tests inspect the fake's recorded requests instead of stderr."""

    def read_body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def send_bytes(
        self, status: int, data: bytes, *, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        """One whole reply; a content-type in `headers` wins over `content_type`."""
        merged = {"content-type": content_type}
        merged.update({name.lower(): value for name, value in (headers or {}).items()})
        merged["content-length"] = str(len(data))
        self.send_response(status)
        for name, value in merged.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def send_json(
        self,
        status: int,
        payload: Any,
        headers: dict[str, str] | None = None,
        *,
        content_type: str = "application/json",
    ) -> None:
        data = json.dumps(payload).encode()
        self.send_bytes(status, data, content_type=content_type, headers=headers)

    def pause(
        self, seconds: float | None, *, released: threading.Event, closing: threading.Event
    ) -> None:
        """Wait `seconds` (None: forever) or until `released`; a client that hangs up meanwhile,
        or `closing`, raises ClientGone so the caller stops replying at once."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while not released.is_set():
            remaining = POLL_S if deadline is None else min(POLL_S, deadline - time.monotonic())
            if remaining <= 0:
                return
            if released.wait(remaining):
                break
            if self.client_gone():
                raise ClientGone("client hung up while the reply was paused")
        if closing.is_set():
            raise ClientGone("fake closing")

    def client_gone(self) -> bool:
        readable, _, _ = select.select([self.connection], [], [], 0)
        if not readable:
            return False
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True


class ControlError(RuntimeError):
    """The fake's control API refused a call (bad input, unknown route)."""


class ControlClient:
    """Calls a fake's /_fake/ control routes over HTTP, from any process."""

    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def _call(
        self,
        method: str,
        path: str,
        payload: Any = None,
        query: dict[str, Any] | None = None,
    ) -> Any:
        params = {k: v for k, v in (query or {}).items() if v is not None}
        url = self.base_url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - 127.0.0.1
        request.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise ControlError(f"{method} {path} answered {exc.code}: {detail}") from exc

    # Routes every fake serves.
    def stats(self) -> dict[str, int]:
        return self._call("GET", "/_fake/stats")

    def release(self) -> None:
        self._call("POST", "/_fake/release", {})

    def reset(self) -> None:
        self._call("POST", "/_fake/reset", {})


class ServedFake(Protocol):
    base_url: str

    def close(self) -> None: ...


def serve_until_signalled(start: Callable[[], ServedFake]) -> int:
    """Process entry of a fake: print `LISTENING <url>`, serve until SIGINT or SIGTERM, exit 0."""
    stop = threading.Event()
    # Handlers go in before the server exists, so a signal can never meet the default action.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    fake = start()
    try:
        print(f"LISTENING {fake.base_url}", flush=True)
        stop.wait()
    finally:
        fake.close()
    return 0
