"""Reports its result, prints more, then lingers like a CLI waiting on a stuck helper."""

import sys
import time

from _stream import delta, emit, result

emit(delta("answer"))
emit(result("final answer"))
emit(delta("after the result"))
sys.stderr.write("late warning\n")
sys.stderr.flush()
while True:
    time.sleep(60)
