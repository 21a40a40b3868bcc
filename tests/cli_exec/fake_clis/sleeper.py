"""Writes its pid to a file and sleeps until killed."""

import os
import sys
import time

tmp = sys.argv[1] + ".tmp"
with open(tmp, "w") as f:
    f.write(str(os.getpid()))
os.rename(tmp, sys.argv[1])
while True:
    time.sleep(60)
