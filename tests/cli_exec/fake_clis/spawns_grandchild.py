"""Starts a helper that ignores SIGINT and SIGTERM and keeps our stdout open, then
either exits at once (mode exit) or waits to be stopped (mode wait)."""

import os
import subprocess
import sys
import time

from _stream import emit, ready, result

pid_file, mode = sys.argv[1], sys.argv[2]
helper = (
    "import os, signal, sys, time\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    f"tmp = {pid_file!r} + '.tmp'\n"
    "open(tmp, 'w').write(str(os.getpid()))\n"
    f"os.rename(tmp, {pid_file!r})\n"
    "while True: time.sleep(60)\n"
)
subprocess.Popen([sys.executable, "-c", helper])
while not os.path.exists(pid_file):
    time.sleep(0.01)
ready()
if mode == "exit":
    emit(result("left a helper behind"))
    sys.exit(0)
while True:
    time.sleep(60)
