"""Prints a delta line of N bytes, then three short ones a few milliseconds apart."""

import sys
import time

from _stream import delta, emit, init, result

init()
emit(delta("y" * int(sys.argv[1])))
for i in range(3):
    time.sleep(0.01)
    emit(delta(f"{i};"))
emit(result())
