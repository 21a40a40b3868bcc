"""The egress proxy: allow-list matching, request heads, and the proxy on its unix socket."""

from __future__ import annotations

import http.server
import ipaddress
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cli_exec.sandbox.egress import (
    MAX_HEAD_BYTES,
    AllowEntry,
    EgressPolicy,
    ProxyRequest,
    parse_head,
)
from cli_exec.sandbox.gateway import ModelCredential
from cli_exec.sandbox.network import PROXY_SOCKET, RunNetwork, SandboxNetwork
from tests.live import free_port


def permitted(hosts: list[str], address: str, port: int) -> bool:
    return EgressPolicy.from_hosts(hosts).permitted(ipaddress.ip_address(address), port)


@pytest.mark.parametrize(
    ("entry", "host", "port", "matches"),
    [
        ("example.com", "example.com", 443, True),
        ("example.com", "example.com", 80, True),
        ("example.com", "example.com", 8080, False),
        ("example.com:8080", "example.com", 8080, True),
        ("example.com:8080", "example.com", 443, False),
        ("Example.COM.", "example.com", 443, True),
        ("example.com", "api.example.com", 443, False),
        ("*.example.com", "api.example.com", 443, True),
        ("*.example.com", "a.b.example.com", 443, True),
        ("*.example.com", "example.com", 443, False),
        ("*.example.com", "badexample.com", 443, False),
        ("[::1]:8080", "::1", 8080, True),
        ("[2001:db8::1]", "2001:db8::1", 443, True),
        ("2001:db8::1", "2001:db8::1", 80, True),
    ],
)
def test_allow_entry_matches_host_and_port(entry, host, port, matches):
    assert AllowEntry.parse(entry).matches(host, port) is matches


@pytest.mark.parametrize("text", ["", "  ", "host:notaport"])
def test_allow_entry_unparseable_raises_value_error(text):
    with pytest.raises(ValueError):
        AllowEntry.parse(text)


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("93.184.216.34", True),
        ("2606:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),  # ipv4-mapped loopback
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("fd00::1", False),
        ("169.254.169.254", False),  # link-local: the cloud metadata service
        ("fe80::1", False),
        ("100.64.0.1", False),  # CGNAT shared space
        ("0.0.0.0", False),  # noqa: S104 - an address to refuse, not one to bind
        ("224.0.0.1", False),  # multicast
    ],
)
def test_policy_unlisted_address_is_permitted_only_when_public(address, allowed):
    assert permitted(["example.com"], address, 443) is allowed


@pytest.mark.parametrize(
    ("hosts", "address", "port", "allowed"),
    [
        (["127.0.0.1:6379"], "127.0.0.1", 6379, True),
        (["127.0.0.1:6379"], "::ffff:127.0.0.1", 6379, True),
        (["127.0.0.1:6379"], "127.0.0.1", 6380, False),
        (["127.0.0.1:6379"], "127.0.0.2", 6379, False),
        (["10.0.0.5"], "10.0.0.5", 443, True),
        (["10.0.0.5"], "10.0.0.5", 22, False),
        (["[::1]:8080"], "::1", 8080, True),
        (["localhost:6379"], "127.0.0.1", 6379, False),
    ],
)
def test_policy_private_address_needs_its_literal_listed(hosts, address, port, allowed):
    assert permitted(hosts, address, port) is allowed


@pytest.mark.parametrize(
    ("line", "host", "port"),
    [
        ("CONNECT Api.Example.com:443 HTTP/1.1", "api.example.com", 443),
        ("CONNECT example.com.:8443 HTTP/1.1", "example.com", 8443),
        ("CONNECT [2001:db8::1]:443 HTTP/1.1", "2001:db8::1", 443),
    ],
)
def test_parse_head_connect_gives_host_port_and_nothing_to_send(line, host, port):
    request = parse_head(f"{line}\r\nHost: ignored\r\n\r\n".encode())

    assert request == ProxyRequest("CONNECT", host, port, b"")


def test_parse_head_absolute_form_becomes_origin_form_without_proxy_headers():
    head = (
        b"GET http://Example.com:8080/path?q=1 HTTP/1.1\r\nHost: example.com:8080\r\n"
        b"Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic c2VjcmV0\r\n"
        b"Connection: keep-alive\r\nKeep-Alive: 300\r\nAccept: */*\r\n\r\n"
    )

    request = parse_head(head)

    assert (request.method, request.host, request.port) == ("GET", "example.com", 8080)
    assert request.head == (
        b"GET /path?q=1 HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\n"
        b"Connection: close\r\n\r\n"
    )


def test_parse_head_absolute_form_without_port_or_path_defaults_to_80_and_root():
    request = parse_head(b"GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n")

    assert request.port == 80
    assert request.head.startswith(b"GET / HTTP/1.1\r\n")


@pytest.mark.parametrize(
    "line",
    [
        "garbage",
        "GET / HTTP/1.1",  # origin-form: not a proxy request
        "GET https://example.com/ HTTP/1.1",
        "GET http://example.com/ SPDY/3",
        "CONNECT example.com HTTP/1.1",
        "CONNECT example.com:https HTTP/1.1",
        "GET http://example.com/a b HTTP/1.1",
    ],
)
def test_parse_head_malformed_request_line_raises_value_error(line):
    with pytest.raises(ValueError):
        parse_head(f"{line}\r\n\r\n".encode())


# --- the proxy on its unix socket ------------------------------------------------------------


class PageHandler(http.server.BaseHTTPRequestHandler):
    """Answers every GET with its path and Connection header; keeps HTTP/1.1 connections."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        body = f"page {self.path} connection={self.headers['Connection']}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet."""


@pytest.fixture
def page_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PageHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def open_proxy(network: SandboxNetwork, run_dir: Path) -> Iterator[Callable[..., RunNetwork]]:
    runs: list[RunNetwork] = []

    def open_run(*hosts: str) -> RunNetwork:
        policy = EgressPolicy.from_hosts(hosts)
        credential = ModelCredential(api_key="unused")
        run = network.open_run(
            run_dir=run_dir, upstream="", credential=credential, policy=policy, label="egress"
        )
        runs.append(run)
        return run

    yield open_run
    for run in runs:
        network.close_run(run)


def proxy_socket(run_dir: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect(str(run_dir / PROXY_SOCKET))
    return sock


def read_until(sock: socket.socket, end: bytes) -> bytes:
    data = b""
    while not data.endswith(end):
        chunk = sock.recv(65536)
        assert chunk, f"EOF before {end!r}; got {data!r}"
        data += chunk
    return data


def read_to_end(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass  # a unix socket closed with our unread bytes in it resets after the answer
    return b"".join(chunks)


def proxy_exchange(run_dir: Path, head: bytes) -> bytes:
    with proxy_socket(run_dir) as sock:
        sock.sendall(head)
        return read_to_end(sock)


def open_tunnel(run_dir: Path, port: int) -> socket.socket:
    sock = proxy_socket(run_dir)
    sock.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n".encode())
    assert read_until(sock, b"\r\n\r\n") == b"HTTP/1.1 200 Connection Established\r\n\r\n"
    return sock


def get_through(sock: socket.socket, path: str) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: page\r\n\r\n".encode())
    return read_until(sock, f"page {path} connection=None".encode())


def test_proxy_connect_to_allowed_server_tunnels_bytes_both_ways(open_proxy, run_dir, page_port):
    open_proxy(f"127.0.0.1:{page_port}")

    with open_tunnel(run_dir, page_port) as sock:
        answers = [get_through(sock, "/first"), get_through(sock, "/second")]

    assert [answer.split(b"\r\n", 1)[0] for answer in answers] == [b"HTTP/1.1 200 OK"] * 2


def test_proxy_absolute_form_get_returns_the_allowed_page(open_proxy, run_dir, page_port):
    open_proxy(f"127.0.0.1:{page_port}")
    head = f"GET http://127.0.0.1:{page_port}/hello?x=1 HTTP/1.1\r\nHost: 127.0.0.1:{page_port}\r\n"

    answer = proxy_exchange(run_dir, f"{head}Proxy-Connection: keep-alive\r\n\r\n".encode())

    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"\r\n\r\npage /hello?x=1 connection=close")


def test_proxy_unlisted_host_answers_403_naming_it(open_proxy, run_dir, page_port):
    open_proxy(f"127.0.0.1:{page_port}")

    answer = proxy_exchange(run_dir, b"CONNECT example.org:443 HTTP/1.1\r\n\r\n")

    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert answer.endswith(b"example.org:443 is not on the sandbox's allow-list\n")


def test_proxy_listed_name_resolving_to_loopback_answers_403(open_proxy, run_dir, page_port):
    run = open_proxy(f"localhost:{page_port}")

    answer = proxy_exchange(run_dir, f"CONNECT localhost:{page_port} HTTP/1.1\r\n\r\n".encode())

    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"localhost resolves to a loopback or private address (" in answer
    assert b"127.0.0.1" in answer
    assert len(run.proxy.refusals) == 1


def test_proxy_head_over_the_limit_answers_431(open_proxy, run_dir, page_port):
    open_proxy(f"127.0.0.1:{page_port}")
    head = f"GET http://127.0.0.1:{page_port}/ HTTP/1.1\r\nX-Big: ".encode()

    answer = proxy_exchange(run_dir, head + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n")

    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


def test_proxy_garbage_request_line_answers_400(open_proxy, run_dir):
    open_proxy("example.com")

    answer = proxy_exchange(run_dir, b"HELLO THERE\r\n\r\n")

    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert answer.endswith(b"not an HTTP request line\n")


def test_proxy_allowed_target_not_listening_answers_502(open_proxy, run_dir):
    port = free_port()
    open_proxy(f"127.0.0.1:{port}")

    answer = proxy_exchange(run_dir, f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n".encode())

    assert answer.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert f"127.0.0.1:{port} is unreachable".encode() in answer


def test_proxy_close_run_cuts_an_open_tunnel(network, open_proxy, run_dir, page_port):
    run = open_proxy(f"127.0.0.1:{page_port}")

    with open_tunnel(run_dir, page_port) as sock:
        get_through(sock, "/before")
        network.close_run(run)
        assert read_to_end(sock) == b""
