"""The descriptors one run watches: the child's three pipes, a wake-up pipe, its pidfd."""

from __future__ import annotations

import fcntl
import os
import selectors
import subprocess
import threading
from enum import StrEnum
from typing import IO

from cli_exec import _procctl

# One read takes half of a grown stdout pipe (all of the others); bigger reads mean fewer
# wake-ups.
_READ_SIZE = 256 * 1024
_STDIN_CHUNK = 64 * 1024
# The CLI's stdout pipe is grown to this (the default is 64 KiB): a writer that finds room
# goes on without waking its reader each time, which is most of what a pipe costs it.
# 512 KiB keeps 100 slots (50 MiB) under the kernel's default per-user budget for pipe
# buffers (fs.pipe-user-pages-soft, 64 MiB), past which new pipes shrink to two pages.
STDOUT_PIPE_BYTES = 512 * 1024


class Channel(StrEnum):
    STDIN = "stdin"
    STDOUT = "stdout"
    STDERR = "stderr"
    WAKE = "wake"
    EXIT = "exit"


class PipeSet:
    """Non-blocking I/O on a child's pipes, multiplexed by one selector."""

    def __init__(self, proc: subprocess.Popen[bytes], stdin_data: bytes) -> None:
        self._files: dict[Channel, IO[bytes]] = {}
        self._open: dict[Channel, int] = {}
        self._selector = selectors.DefaultSelector()
        self._stdin_data = memoryview(stdin_data)
        self._stdin_pos = 0
        stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr
        if stdin is None or stdout is None or stderr is None:
            raise RuntimeError("the CLI was started without its three pipes")
        self._files = {Channel.STDIN: stdin, Channel.STDOUT: stdout, Channel.STDERR: stderr}
        _grow_pipe(stdout.fileno(), STDOUT_PIPE_BYTES)
        self._watch(Channel.STDOUT, stdout.fileno(), selectors.EVENT_READ)
        self._watch(Channel.STDERR, stderr.fileno(), selectors.EVENT_READ)
        if stdin_data:
            self._watch(Channel.STDIN, stdin.fileno(), selectors.EVENT_WRITE)
        else:
            stdin.close()
        self._wake = WakePipe()
        self._selector.register(self._wake.read_end, selectors.EVENT_READ, Channel.WAKE)
        pidfd = _procctl.open_pidfd(proc.pid)
        if pidfd is not None:
            self._watch(Channel.EXIT, pidfd, selectors.EVENT_READ)

    def fileno(self) -> int:
        """The selector's own descriptor: readable while any watched channel is ready."""
        return self._selector.fileno()

    def is_open(self, channel: Channel) -> bool:
        return channel in self._open

    def wait(self, timeout: float) -> set[Channel]:
        """The channels that are ready, waiting at most timeout seconds."""
        return {key.data for key, _mask in self._selector.select(timeout)}

    def read(self, channel: Channel) -> bytes:
        """Whatever is available now; b"" if nothing (EOF closes the channel)."""
        fd = self._open.get(channel)
        if fd is None:
            return b""
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return b""
        if not data:
            self.close(channel)
        return data

    def write_stdin(self) -> None:
        fd = self._open.get(Channel.STDIN)
        if fd is None:
            return
        end = self._stdin_pos + _STDIN_CHUNK
        try:
            self._stdin_pos += os.write(fd, self._stdin_data[self._stdin_pos : end])
        except BlockingIOError:
            return
        except OSError:
            # The child closed stdin or died; what it did not read it will never need.
            self.close(Channel.STDIN)
            return
        if self._stdin_pos >= len(self._stdin_data):
            self.close(Channel.STDIN)  # EOF tells the CLI the prompt is complete

    def wake(self) -> None:
        """Interrupt wait() from any thread."""
        self._wake.wake()

    def drain_wake(self) -> None:
        self._wake.drain()

    def close(self, channel: Channel) -> None:
        fd = self._open.pop(channel, None)
        if fd is None:
            return
        self._selector.unregister(fd)
        file = self._files.get(channel)
        if file is not None:
            file.close()  # through Popen's file object, so it never closes the fd twice
        else:
            os.close(fd)

    def close_all(self) -> None:
        for channel in list(self._open):
            self.close(channel)
        for file in self._files.values():
            file.close()
        self._selector.unregister(self._wake.read_end)
        self._wake.close()
        self._selector.close()

    def _watch(self, channel: Channel, fd: int, events: int) -> None:
        if channel is not Channel.EXIT:
            os.set_blocking(fd, False)
        self._selector.register(fd, events, channel)
        self._open[channel] = fd


class WakePipe:
    """A pipe that interrupts a selector's wait: its read end is watched, and any thread
    may `wake()` the waiter, which then `drain()`s it."""

    def __init__(self) -> None:
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        os.set_blocking(write_end, False)
        self.read_end = read_end
        # Guards the write end: other threads may still wake a waiter that is closing.
        self._lock = threading.Lock()
        self._write_end: int | None = write_end

    def wake(self) -> None:
        with self._lock:
            if self._write_end is None:
                return  # closed: nobody waits any more
            try:
                os.write(self._write_end, b"\0")
            except BlockingIOError:
                pass  # a wake-up is already pending

    def drain(self) -> None:
        try:
            while os.read(self.read_end, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        with self._lock:
            write_end, self._write_end = self._write_end, None
        if write_end is not None:
            os.close(write_end)
            os.close(self.read_end)

    def close_in_forked_child(self) -> None:
        """close() in a forked child, where the lock may have been held at the fork by a
        thread that is not there."""
        self._lock = threading.Lock()
        self.close()


def _grow_pipe(fd: int, size: int) -> None:
    """Best effort: a kernel that refuses (over fs.pipe-max-size or the user's budget)
    leaves the pipe as it was, which works, only with more wake-ups."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)
    except OSError:
        pass
