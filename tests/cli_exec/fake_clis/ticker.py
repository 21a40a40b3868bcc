"""Prints a line every few milliseconds forever: only the wall clock can stop it."""

import time

from _stream import delta, emit

while True:
    emit(delta("tick"))
    time.sleep(0.02)
