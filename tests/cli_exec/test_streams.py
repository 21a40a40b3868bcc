"""LineSplitter and the decoders: lines across chunks, over-long lines, tails."""

from __future__ import annotations

from cli_exec._streams import STDERR_TAIL_CHARS, LinePiece, LineSplitter, StderrDecoder
from cli_exec.redact import Redactor


def test_lines_split_across_chunks_are_joined():
    splitter = LineSplitter(100, 100)

    assert splitter.feed(b"ab") == []
    assert splitter.feed(b"c\nde") == [LinePiece(b"abc")]
    assert splitter.feed(b"f\ng\n") == [LinePiece(b"def\ng")]


def test_unterminated_last_line_comes_out_at_finish():
    splitter = LineSplitter(100, 100)
    splitter.feed(b"a\nlast")

    assert splitter.finish() == [LinePiece(b"last")]
    assert splitter.finish() == []


def test_long_line_is_cut_and_its_rest_discarded_without_buffering():
    splitter = LineSplitter(10, 10)

    assert splitter.feed(b"x" * 25) == [LinePiece(b"x" * 10, truncated=True)]
    assert splitter.feed(b"y" * 1000) == []
    assert splitter.feed(b"zz\nnext\n") == [LinePiece(b"next")]


def test_long_line_inside_one_chunk_is_cut_between_short_ones():
    splitter = LineSplitter(10, 10)

    pieces = splitter.feed(b"a\nb\n" + b"x" * 30 + b"\nc\n")

    assert pieces == [
        LinePiece(b"a\nb"),
        LinePiece(b"x" * 10, truncated=True),
        LinePiece(b"c"),
    ]


def test_of_a_long_line_only_the_kept_head_goes_on():
    # Whether it overflows the buffer or arrives whole inside one chunk.
    splitter = LineSplitter(100, 8)

    assert splitter.feed(b"h" * 8 + b"x" * 200) == [LinePiece(b"h" * 8, truncated=True)]
    assert splitter.feed(b"x\nok\n" + b"H" * 8 + b"y" * 150 + b"\nend\n") == [
        LinePiece(b"ok"),
        LinePiece(b"H" * 8, truncated=True),
        LinePiece(b"end"),
    ]
    # A kept head longer than the limit is the limit.
    assert LineSplitter(10, 64).feed(b"x" * 30) == [LinePiece(b"x" * 10, truncated=True)]


def test_a_long_stderr_line_keeps_its_head():
    decoder = StderrDecoder(Redactor([]), 100, 8)

    events = decoder.feed(b"E" * 8 + b"e" * 500 + b"\n")

    assert [event.payload for event in events] == [{"text": "E" * 8, "truncated": True}]


def test_line_exactly_at_the_limit_is_kept_whole():
    splitter = LineSplitter(10, 10)

    assert splitter.feed(b"x" * 10 + b"\n") == [LinePiece(b"x" * 10)]


def test_stderr_tail_keeps_only_the_last_lines_redacted():
    decoder = StderrDecoder(Redactor(["hunter2-secret"]), 1_000_000, 1_000_000)
    for i in range(2000):
        decoder.feed(f"line {i} hunter2-secret\n".encode())

    tail = decoder.tail
    assert len(tail) <= STDERR_TAIL_CHARS
    assert tail.endswith("line 1999 [REDACTED]")
    assert "hunter2" not in tail


def test_stderr_blank_lines_are_skipped_and_bad_bytes_replaced():
    decoder = StderrDecoder(Redactor([]), 1000, 1000)

    events = decoder.feed(b"\n \nbad \xff byte\r\n")

    assert [event.payload for event in events] == [{"text": "bad \ufffd byte"}]
