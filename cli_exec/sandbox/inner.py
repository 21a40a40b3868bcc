"""The sandbox's first process: relays loopback ports to the worker's sockets, runs the
agent's command in a session of its own, passes stop signals on and exits with its status.
With `--hold-fd N` it starts the command only once the worker writes to that pipe (the
worker fills the workspace meanwhile); the pipe closed without a word: it exits at once.

It runs inside the sandbox under the system's python3, so it uses the standard library
only and imports nothing of ours. It starts with every run, so it imports only built-in
modules (_socket, _thread, _signal): `subprocess`, `socket` and `signal` would cost
more than the rest of its start-up together. Usage:
    python3 -I -S inner.py [--hold-fd N] --forward PORT=SOCKET_PATH ... -- COMMAND ARGS...
"""

from __future__ import annotations

import _signal
import _socket
import _thread
import os
import sys

_CHUNK = 65536
_FORWARDED_SIGNALS = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP)
# What the command starts with: default dispositions (Python ignores SIGPIPE and SIGXFSZ,
# and ignored signals survive exec).
_DEFAULTED_SIGNALS = (*_FORWARDED_SIGNALS, _signal.SIGPIPE, _signal.SIGXFSZ)
Socket = _socket.socket


def parse(argv: list[str]) -> tuple[int | None, list[tuple[int, str]], list[str]]:
    hold_fd = None
    forwards = []
    index = 0
    while index + 1 < len(argv) and argv[index] in ("--forward", "--hold-fd"):
        if argv[index] == "--hold-fd":
            hold_fd = int(argv[index + 1])
        else:
            port, _, path = argv[index + 1].partition("=")
            forwards.append((int(port), path))
        index += 2
    if index >= len(argv) or argv[index] != "--" or index + 1 >= len(argv):
        raise SystemExit(
            "usage: inner.py [--hold-fd N] [--forward PORT=SOCKET]... -- COMMAND [ARGS]..."
        )
    return hold_fd, forwards, argv[index + 1 :]


def released(hold_fd: int) -> bool:
    """Wait until the worker says go (True) or closes the pipe without a word (False)."""
    try:
        word = os.read(hold_fd, 1)
    finally:
        os.close(hold_fd)
    return word == b"g"


def _copy(source: Socket, target: Socket, done: _thread.LockType | None) -> None:
    try:
        while True:
            data = source.recv(_CHUNK)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    finally:
        # Half-close: the other direction may still be sending (a streamed reply).
        try:
            target.shutdown(_socket.SHUT_WR)
        except OSError:
            pass
        if done is not None:
            done.release()


def _relay(client: Socket, path: str) -> None:
    upstream = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        upstream.connect(path)
    except OSError:
        client.close()
        upstream.close()
        return
    back_done = _thread.allocate_lock()
    back_done.acquire()
    _thread.start_new_thread(_copy, (upstream, client, back_done))
    _copy(client, upstream, None)
    back_done.acquire()
    client.close()
    upstream.close()


def _accept_forever(listener: Socket, path: str) -> None:
    while True:
        fd, _ = listener._accept()
        client = _socket.socket(fileno=fd)
        client.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        _thread.start_new_thread(_relay, (client, path))


def listen(port: int) -> Socket:
    listener = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    listener.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    return listener


def main(argv: list[str]) -> int:
    hold_fd, forwards, command = parse(argv)
    # Listening before the command starts: its first request can never find the port closed.
    for port, path in forwards:
        _thread.start_new_thread(_accept_forever, (listen(port), path))
    # Handlers before the command exists: bubblewrap left these signals ignored, and a
    # stop that arrives while the command starts must still reach it.
    pending: list[int] = []
    child: list[int] = []

    def pass_on(signum: int, _frame: object) -> None:
        if not child:
            pending.append(signum)
            return
        try:
            os.killpg(child[0], signum)
        except ProcessLookupError:
            pass

    for signum in _FORWARDED_SIGNALS:
        _signal.signal(signum, pass_on)
    if hold_fd is not None and not released(hold_fd):
        return 0  # the attempt ended before its command was to start
    if pending:  # stopped while held: the command never starts
        _signal.signal(pending[0], _signal.SIG_DFL)
        os.kill(os.getpid(), pending[0])
    child.append(
        os.posix_spawnp(command[0], command, os.environ, setsid=True, setsigdef=_DEFAULTED_SIGNALS)
    )
    for signum in pending:
        pass_on(signum, None)
    _, status = os.waitpid(child[0], 0)
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        # Die the way the command died, so the supervisor sees the same signal.
        _signal.signal(-code, _signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
