"""Prints 1 MiB before reading its prompt: a blocking prompt write would deadlock on it."""

import hashlib
import sys

from _stream import delta, emit, result

for _ in range(4096):
    emit(delta("x" * 200))
prompt = sys.stdin.buffer.read()
emit(result(f"{len(prompt)} {hashlib.sha256(prompt).hexdigest()}"))
