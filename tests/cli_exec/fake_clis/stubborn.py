"""Waits to be stopped. Mode plain: default signal handling; graceful: answers SIGINT
like Claude (a result, exit 0); ignore_int: ignores SIGINT, dies on SIGTERM; ignore_all:
ignores both."""

import json
import os
import signal
import sys
import time

from _stream import ready, result

mode = sys.argv[1]


def interrupted(signum: int, frame: object) -> None:
    # os.write, not sys.stdout: the signal may land while ready() is still flushing, and
    # the buffered writer refuses reentrant calls.
    os.write(
        1, (json.dumps(result("interrupted", subtype="error_during_execution")) + "\n").encode()
    )
    os._exit(0)


if mode == "graceful":
    signal.signal(signal.SIGINT, interrupted)
if mode in ("ignore_int", "ignore_all"):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
if mode == "ignore_all":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
ready()
while True:
    time.sleep(60)
