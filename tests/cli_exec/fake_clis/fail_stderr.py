"""Complains on stderr and exits non-zero without a result."""

import sys

from _stream import init

init()
sys.stderr.write("starting up\n")
sys.stderr.write("Error: something broke badly\n")
sys.exit(3)
