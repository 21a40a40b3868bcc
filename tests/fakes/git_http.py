"""Git smart HTTP for the fake GitHub: each request runs `git http-backend` as a CGI, with the
request body streamed to it (de-chunked) and its answer relayed chunked as it comes."""

from __future__ import annotations

import logging
import re
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import IO

from tests.fakes.git_repos import GIT_TIMEOUT_S, git_env
from tests.fakes.http_base import JOIN_TIMEOUT_S, ClientGone

logger = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
MAX_CGI_HEAD = 64 * 1024
MAX_LINE = 8 * 1024
# GitHub serves https://github.com/o/r.git/... and https://github.com/o/r/... alike.
_GIT_PATH = re.compile(
    r"/(?P<owner>[A-Za-z0-9][A-Za-z0-9-]*)/(?P<name>[A-Za-z0-9_.-]+?)(?:\.git)?"
    r"/(?P<service>info/refs|git-upload-pack|git-receive-pack)"
)
# Request headers http-backend reads as CGI variables: gzip bodies (git gzips large fetch
# negotiations) and the protocol version (without it, everything falls back to v0).
_PASSED_HEADERS = {"content-encoding": "HTTP_CONTENT_ENCODING", "git-protocol": "HTTP_GIT_PROTOCOL"}


@dataclass(frozen=True)
class GitPath:
    """A smart-HTTP path: the repository asked for and what of it."""

    full_name: str
    service: str  # "info/refs", "git-upload-pack" or "git-receive-pack"


def match_git_path(path: str) -> GitPath | None:
    match = _GIT_PATH.fullmatch(path)
    if match is None:
        return None
    return GitPath(f"{match['owner']}/{match['name']}", match["service"])


@dataclass(frozen=True)
class BackendRequest:
    """One git request for http-backend; `repository` is the bare repo under `project_root`."""

    method: str
    project_root: Path
    repository: Path
    service: str
    query: str
    headers: dict[str, str]  # lower-case names
    remote_user: str


def backend_env(request: BackendRequest, remote_addr: str) -> dict[str, str]:
    relative = request.repository.relative_to(request.project_root).as_posix()
    env = git_env() | {
        "GIT_PROJECT_ROOT": str(request.project_root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": "http.receivepack",
        "GIT_CONFIG_VALUE_0": "true",
        # GitHub lets clients fetch any reachable commit by sha.
        "GIT_CONFIG_KEY_1": "uploadpack.allowReachableSHA1InWant",
        "GIT_CONFIG_VALUE_1": "true",
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_METHOD": request.method,
        "PATH_INFO": f"/{relative}/{request.service}",
        "QUERY_STRING": request.query,
        "CONTENT_TYPE": request.headers.get("content-type", ""),
        "REMOTE_USER": request.remote_user,
        "REMOTE_ADDR": remote_addr,
    }
    # Without CONTENT_LENGTH http-backend reads the body to EOF, which a chunked one needs.
    if not _is_chunked(request.headers) and "content-length" in request.headers:
        env["CONTENT_LENGTH"] = request.headers["content-length"]
    for header, variable in _PASSED_HEADERS.items():
        if header in request.headers:
            env[variable] = request.headers[header]
    return env


def run_http_backend(
    handler: BaseHTTPRequestHandler,
    request: BackendRequest,
    *,
    extra_headers: dict[str, str],
    finish: Callable[[int], None],
) -> None:
    """Answer `handler`'s request with http-backend's; `finish(status)` runs once the whole
    answer but its last chunk has gone out, so a client that got it can trust the recording."""
    posting = request.method == "POST"
    with tempfile.TemporaryFile(prefix="fake-github-http-backend-") as stderr:
        backend = subprocess.Popen(
            ["git", "http-backend"],
            stdin=subprocess.PIPE if posting else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=backend_env(request, handler.client_address[0]),
            bufsize=0,
        )
        feeder = None
        try:
            if posting:
                assert backend.stdin is not None
                feeder = _start_feeder(handler, request.headers, backend.stdin)
            _relay(handler, backend, extra_headers, finish, stderr)
        finally:
            if backend.poll() is None:
                backend.kill()
            backend.wait(GIT_TIMEOUT_S)
            assert backend.stdout is not None
            backend.stdout.close()
            if feeder is not None:
                feeder.join(JOIN_TIMEOUT_S)
                # A feeder still reading means the request body was not all read: the next
                # request on this connection would start mid-body.
                handler.close_connection = handler.close_connection or feeder.is_alive()


def _relay(
    handler: BaseHTTPRequestHandler,
    backend: subprocess.Popen[bytes],
    extra_headers: dict[str, str],
    finish: Callable[[int], None],
    stderr: IO[bytes],
) -> None:
    assert backend.stdout is not None
    head, rest = _read_cgi_head(backend.stdout)
    if head is None:
        backend.wait(GIT_TIMEOUT_S)
        stderr.seek(0)
        message = stderr.read().decode(errors="replace") or "git http-backend gave no answer"
        _answer_cgi_failure(handler, message, finish)
        return
    status, reason, headers = _parse_cgi_head(head)
    handler.send_response(status, reason)
    skipped = {"status", "content-length", "transfer-encoding", "connection"}
    for name, value in [*headers, *extra_headers.items()]:
        if name.lower() not in skipped:
            handler.send_header(name, value)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    if rest:
        _write_chunk(handler, rest)
    while chunk := backend.stdout.read(READ_SIZE):
        _write_chunk(handler, chunk)
    backend.wait(GIT_TIMEOUT_S)
    finish(status)
    handler.wfile.write(b"0\r\n\r\n")


def _answer_cgi_failure(
    handler: BaseHTTPRequestHandler, message: str, finish: Callable[[int], None]
) -> None:
    logger.warning("git http-backend failed: %s", message)
    data = message.encode()
    finish(502)
    handler.send_response(502)
    handler.send_header("Content-Type", "text/plain; charset=utf-8")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def _write_chunk(handler: BaseHTTPRequestHandler, data: bytes) -> None:
    handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))


def _read_cgi_head(stdout: IO[bytes]) -> tuple[bytes | None, bytes]:
    """The CGI header block and whatever body bytes came with it; None if stdout ended first."""
    buffer = b""
    while len(buffer) < MAX_CGI_HEAD:
        ends = [i for i in (buffer.find(b"\r\n\r\n"), buffer.find(b"\n\n")) if i >= 0]
        if ends:
            end = min(ends)
            separator = 4 if buffer[end : end + 4] == b"\r\n\r\n" else 2
            return buffer[:end], buffer[end + separator :]
        chunk = stdout.read(READ_SIZE)
        if not chunk:
            return None, b""
        buffer += chunk
    return None, b""


def _parse_cgi_head(head: bytes) -> tuple[int, str | None, list[tuple[str, str]]]:
    status, reason, headers = 200, None, []
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() == "status":
            code, _, reason = value.strip().partition(" ")
            status = int(code)
        elif name.strip():
            headers.append((name.strip(), value.strip()))
    return status, reason or None, headers


def _is_chunked(headers: dict[str, str]) -> bool:
    return "chunked" in headers.get("transfer-encoding", "").lower()


def _start_feeder(
    handler: BaseHTTPRequestHandler, headers: dict[str, str], stdin: IO[bytes]
) -> threading.Thread:
    # Its own thread: http-backend may answer before it has read everything (an error, or
    # receive-pack's progress), and a single thread would then deadlock on the full pipe.
    feeder = threading.Thread(
        target=_feed_body, args=(handler, headers, stdin), name="fake-github-git-body", daemon=True
    )
    feeder.start()
    return feeder


def _feed_body(handler: BaseHTTPRequestHandler, headers: dict[str, str], stdin: IO[bytes]) -> None:
    if _is_chunked(headers):
        pieces = _read_chunked(handler.rfile)
    else:
        pieces = _read_exact(handler.rfile, int(headers.get("content-length") or 0))
    sink: IO[bytes] | None = stdin
    try:
        for piece in pieces:
            if sink is None:
                continue  # http-backend gave up; read on so the connection stays in step
            try:
                sink.write(piece)
            except BrokenPipeError:
                sink = None
    except (ClientGone, OSError, ValueError) as exc:
        logger.debug("git request body ended early: %s", exc)
    finally:
        try:
            stdin.close()
        except BrokenPipeError:
            logger.debug("http-backend exited before reading all of the request body")


def _read_exact(rfile: IO[bytes], size: int) -> Iterator[bytes]:
    while size > 0:
        piece = rfile.read(min(size, READ_SIZE))
        if not piece:
            raise ClientGone("client hung up mid-body")
        size -= len(piece)
        yield piece


def _read_chunked(rfile: IO[bytes]) -> Iterator[bytes]:
    while True:
        line = rfile.readline(MAX_LINE)
        if not line:
            raise ClientGone("client hung up mid-body")
        size = int(line.split(b";")[0].strip(), 16)
        if size == 0:
            while rfile.readline(MAX_LINE) not in (b"\r\n", b"\n", b""):
                pass  # trailers: nothing git sends needs them
            return
        yield from _read_exact(rfile, size)
        rfile.readline(MAX_LINE)  # the CRLF after each chunk
