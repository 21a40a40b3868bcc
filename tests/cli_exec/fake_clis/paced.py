"""Prints N partial-text lines one at a time, `interval_ms` apart, then a result."""

import sys
import time

from _stream import delta, emit, init, result

count, interval_s = int(sys.argv[1]), float(sys.argv[2]) / 1000
init()
for i in range(count):
    emit(delta(f"{i};"))
    time.sleep(interval_s)
emit(result())
