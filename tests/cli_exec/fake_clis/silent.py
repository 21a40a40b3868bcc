"""Says one thing and then nothing at all."""

import time

from _stream import delta, emit

emit(delta("hello"))
while True:
    time.sleep(60)
