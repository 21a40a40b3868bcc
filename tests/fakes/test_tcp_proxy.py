"""The TCP proxy against a tiny echo server: forwarding, refusing and going silent."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.fakes.tcp_proxy import ProxyMode, TcpProxy

# Long enough for loopback to answer many times over; only used where an answer is expected
# or where its absence is the point (the proxy holds the bytes, so waiting longer changes
# nothing).
QUIET_S = 0.5


@contextlib.contextmanager
def echo_server() -> Iterator[int]:
    """Echoes every connection's bytes back until the client hangs up; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stopping = threading.Event()
    threads: list[threading.Thread] = []

    def echo(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(0.05)
            while not stopping.is_set():
                try:
                    data = conn.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)

    def accept() -> None:
        while not stopping.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=echo, args=(conn,), daemon=True)
            threads.append(thread)
            thread.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stopping.set()
        acceptor.join(5)
        for thread in threads:
            thread.join(5)
        listener.close()


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    with echo_server() as port, TcpProxy("127.0.0.1", port, name="echo-proxy") as proxy:
        yield proxy


def connect(proxy: TcpProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    sock.settimeout(5)
    return sock


def round_trip(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    received = b""
    while len(received) < len(data):
        chunk = sock.recv(4096)
        if not chunk:
            break
        received += chunk
    return received


def is_reset(sock: socket.socket) -> bool:
    """The peer ended the connection: a reset, or end of stream after it."""
    try:
        sock.sendall(b"x")
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def new_connection_is_reset(proxy: TcpProxy) -> bool:
    try:
        sock = connect(proxy)
    except ConnectionResetError:
        return True  # the reset can beat connect() back on loopback
    with sock:
        return is_reset(sock)


def test_pass_forwards_both_ways_and_large_payloads(proxy):
    with connect(proxy) as sock:
        assert round_trip(sock, b"hello") == b"hello"
        big = bytes(range(256)) * 4096  # 1 MiB: many chunks, partial sends
        assert round_trip(sock, big) == big


def test_refuse_resets_open_connections_and_new_ones(proxy):
    with connect(proxy) as sock:
        assert round_trip(sock, b"before") == b"before"
        proxy.set_mode(ProxyMode.REFUSE)
        assert is_reset(sock)
    assert new_connection_is_reset(proxy)
    assert proxy.open_connections == 0


def test_pass_after_refuse_serves_new_connections(proxy):
    proxy.set_mode(ProxyMode.REFUSE)
    proxy.set_mode(ProxyMode.PASS)
    with connect(proxy) as sock:
        assert round_trip(sock, b"again") == b"again"


def test_blackhole_holds_an_open_connection_and_pass_delivers_what_was_held(proxy):
    with connect(proxy) as sock:
        assert round_trip(sock, b"before") == b"before"
        proxy.set_mode(ProxyMode.BLACKHOLE)
        sock.sendall(b"held")
        sock.settimeout(QUIET_S)
        with pytest.raises(TimeoutError):
            sock.recv(16)
        proxy.set_mode(ProxyMode.PASS)
        sock.settimeout(5)
        assert sock.recv(16) == b"held"


def test_blackhole_accepts_new_connections_but_never_answers(proxy):
    proxy.set_mode(ProxyMode.BLACKHOLE)
    with connect(proxy) as sock:
        sock.sendall(b"anyone?")
        sock.settimeout(QUIET_S)
        with pytest.raises(TimeoutError):
            sock.recv(16)
        proxy.set_mode(ProxyMode.PASS)
        sock.settimeout(5)
        assert sock.recv(16) == b"anyone?"


def test_refuse_during_blackhole_resets_held_connections(proxy):
    with connect(proxy) as sock:
        proxy.set_mode(ProxyMode.BLACKHOLE)
        proxy.set_mode(ProxyMode.REFUSE)
        assert is_reset(sock)


def test_stop_resets_every_connection_and_closes_the_listener():
    with echo_server() as port:
        proxy = TcpProxy("127.0.0.1", port).start()
        listening = proxy.port
        sock = connect(proxy)
        assert round_trip(sock, b"x") == b"x"
        proxy.stop()
        assert is_reset(sock)
        sock.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", listening), timeout=5)


def test_url_points_at_the_proxy_and_keeps_credentials(proxy):
    url = proxy.url("postgres://user:secret@db.example:5432/name?sslmode=disable")
    assert url == f"postgres://user:secret@127.0.0.1:{proxy.port}/name?sslmode=disable"
    assert proxy.url("redis://127.0.0.1:6379/7") == f"redis://127.0.0.1:{proxy.port}/7"
