"""Turns raw pipe chunks into redacted events, a whole chunk of lines at a time."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from cli_exec.events import CliEvent, raw_event, stderr_event
from cli_exec.parser import StdoutParser
from cli_exec.redact import Redactor

STDERR_TAIL_CHARS = 4096


@dataclass(frozen=True, slots=True)
class LinePiece:
    """Complete lines joined by b"\\n" (no final newline), or the kept head of a cut line."""

    data: bytes
    truncated: bool = False


class LineSplitter:
    """Splits a byte stream into lines without ever holding more than one line limit.

    Of a line over the limit only its first `kept_bytes` are passed on (a truncated
    piece): it cannot be parsed, and its head says what it was."""

    def __init__(self, max_line_bytes: int, kept_bytes: int) -> None:
        self._max = max_line_bytes
        self._kept = min(kept_bytes, max_line_bytes)
        self._partial = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> list[LinePiece]:
        if self._discarding:
            newline = data.find(b"\n")
            if newline == -1:
                return []
            data = data[newline + 1 :]
            self._discarding = False
        pieces: list[LinePiece] = []
        # Only the new data is searched, so a long line arriving in many chunks stays linear.
        last_newline = data.rfind(b"\n")
        if last_newline != -1:
            block = (
                bytes(self._partial) + data[:last_newline] if self._partial else data[:last_newline]
            )
            self._partial = bytearray(data[last_newline + 1 :])
            pieces.extend(self._split_long(block))
        else:
            self._partial += data
        if len(self._partial) > self._max:
            pieces.append(LinePiece(bytes(self._partial[: self._kept]), truncated=True))
            self._partial = bytearray()
            self._discarding = True
        return pieces

    def finish(self) -> list[LinePiece]:
        """The unterminated last line, if the stream ended without a newline."""
        if self._discarding or not self._partial:
            return []
        piece = LinePiece(bytes(self._partial))
        self._partial = bytearray()
        return [piece]

    def _split_long(self, block: bytes) -> list[LinePiece]:
        if len(block) <= self._max:
            return [LinePiece(block)]
        # Rare slow path: some line in this block may be over the limit.
        pieces: list[LinePiece] = []
        short: list[bytes] = []
        for line in block.split(b"\n"):
            if len(line) <= self._max:
                short.append(line)
                continue
            if short:
                pieces.append(LinePiece(b"\n".join(short)))
                short = []
            pieces.append(LinePiece(line[: self._kept], truncated=True))
        if short:
            pieces.append(LinePiece(b"\n".join(short)))
        return pieces


class StdoutDecoder:
    """stdout bytes → parsed, redacted events; decodes and redacts per chunk, not per line."""

    def __init__(self, redactor: Redactor, max_line_bytes: int, kept_bytes: int) -> None:
        self._redactor = redactor
        self._splitter = LineSplitter(max_line_bytes, kept_bytes)
        self._parser = StdoutParser()
        self.lines = 0

    def feed(self, data: bytes) -> list[CliEvent]:
        return self._decode(self._splitter.feed(data))

    def finish(self) -> list[CliEvent]:
        return self._decode(self._splitter.finish())

    def _decode(self, pieces: list[LinePiece]) -> list[CliEvent]:
        events: list[CliEvent] = []
        for piece in pieces:
            if piece.truncated:
                self.lines += 1
                text = self._redactor.redact_text(piece.data.decode("utf-8", "replace"))
                events.append(raw_event(text, "line too long", truncated=True))
                continue
            try:
                text = piece.data.decode("utf-8")
            except UnicodeDecodeError:
                events.extend(self._decode_lines_one_by_one(piece.data))
                continue
            parse = self._parser.parse_text
            lines = self._redactor.redact_text(text).split("\n")
            self.lines += len(lines)
            for line in lines:
                events.extend(parse(line))
        return events

    def _decode_lines_one_by_one(self, block: bytes) -> list[CliEvent]:
        # Only the lines that are not UTF-8 become raw; their neighbours parse normally.
        events: list[CliEvent] = []
        for line in block.split(b"\n"):
            self.lines += 1
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                text = self._redactor.redact_text(line.decode("utf-8", "replace"))
                events.append(raw_event(text.rstrip("\r"), "invalid UTF-8"))
                continue
            events.extend(self._parser.parse_text(self._redactor.redact_text(text)))
        return events


class StderrDecoder:
    """stderr bytes → redacted stderr events, keeping a short tail for error messages."""

    def __init__(self, redactor: Redactor, max_line_bytes: int, kept_bytes: int) -> None:
        self._redactor = redactor
        self._splitter = LineSplitter(max_line_bytes, kept_bytes)
        self._tail: deque[str] = deque()
        self._tail_chars = 0

    def feed(self, data: bytes) -> list[CliEvent]:
        return self._decode(self._splitter.feed(data))

    def finish(self) -> list[CliEvent]:
        return self._decode(self._splitter.finish())

    @property
    def tail(self) -> str:
        return "\n".join(self._tail)[-STDERR_TAIL_CHARS:]

    def _decode(self, pieces: list[LinePiece]) -> list[CliEvent]:
        events: list[CliEvent] = []
        for piece in pieces:
            # The tail is built from redacted lines so a cut can never expose half a secret.
            text = self._redactor.redact_text(piece.data.decode("utf-8", "replace"))
            for line in text.split("\n") if not piece.truncated else [text]:
                line = line.rstrip("\r")
                if not line or line.isspace():
                    continue
                self._remember(line)
                events.append(stderr_event(line, truncated=piece.truncated))
        return events

    def _remember(self, line: str) -> None:
        self._tail.append(line)
        self._tail_chars += len(line) + 1
        while self._tail_chars > STDERR_TAIL_CHARS and len(self._tail) > 1:
            self._tail_chars -= len(self._tail.popleft()) + 1
