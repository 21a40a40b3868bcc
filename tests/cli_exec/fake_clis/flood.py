"""Prints as fast as it can, forever."""

import json
import sys

from _stream import delta

line = (json.dumps(delta("y" * 1000)) + "\n").encode()
while True:
    sys.stdout.buffer.write(line * 64)
