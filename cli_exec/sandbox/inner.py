"""The sandbox's first process: relays loopback ports to the worker's sockets, runs the
agent's command in a session of its own, passes stop signals on and exits with its status.

It runs inside the sandbox under the system's python3, so it uses the standard library
only and imports nothing of ours. Usage:
    python3 -I -S inner.py --forward PORT=SOCKET_PATH ... -- COMMAND ARGS...
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading

_CHUNK = 65536
_FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def parse(argv: list[str]) -> tuple[list[tuple[int, str]], list[str]]:
    forwards: list[tuple[int, str]] = []
    index = 0
    while index < len(argv) and argv[index] == "--forward":
        port, _, path = argv[index + 1].partition("=")
        forwards.append((int(port), path))
        index += 2
    if index >= len(argv) or argv[index] != "--" or index + 1 >= len(argv):
        raise SystemExit("usage: inner.py [--forward PORT=SOCKET]... -- COMMAND [ARGS]...")
    return forwards, argv[index + 1 :]


def _copy(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(_CHUNK):
            target.sendall(data)
    except OSError:
        pass
    finally:
        # Half-close: the other direction may still be sending (a streamed reply).
        try:
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _relay(client: socket.socket, path: str) -> None:
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.connect(path)
    except OSError:
        client.close()
        upstream.close()
        return
    back = threading.Thread(target=_copy, args=(upstream, client), daemon=True)
    back.start()
    _copy(client, upstream)
    back.join()
    client.close()
    upstream.close()


def _accept_forever(listener: socket.socket, path: str) -> None:
    while True:
        client, _ = listener.accept()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_relay, args=(client, path), daemon=True).start()


def listen(port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    return listener


def main(argv: list[str]) -> int:
    forwards, command = parse(argv)
    # Listening before the command starts: its first request can never find the port closed.
    for port, path in forwards:
        listener = listen(port)
        threading.Thread(target=_accept_forever, args=(listener, path), daemon=True).start()
    # Handlers before the command exists: bubblewrap left these signals ignored, and a
    # stop that arrives while the command starts must still reach it.
    pending: list[int] = []
    child: subprocess.Popen[bytes] | None = None

    def pass_on(signum: int, _frame: object) -> None:
        if child is None:
            pending.append(signum)
            return
        try:
            os.killpg(child.pid, signum)
        except ProcessLookupError:
            pass

    for signum in _FORWARDED_SIGNALS:
        signal.signal(signum, pass_on)
    child = subprocess.Popen(command, start_new_session=True)  # noqa: S603
    for signum in pending:
        pass_on(signum, None)
    code = child.wait()
    if code < 0:
        # Die the way the command died, so the supervisor sees the same signal.
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
