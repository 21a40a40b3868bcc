"""Echoes the secret it was given on stdin in every way a CLI might leak it."""

import json
import sys

from _stream import delta, emit, result

secret = sys.stdin.read()
emit(delta(f"raw {secret} end"))
sys.stdout.write('{"type":"system","subtype":"note","text":' + json.dumps(secret) + "}\n")
sys.stdout.write("not json " + secret + "\n")
sys.stdout.flush()
sys.stderr.write(f"stderr says {secret}\n")
sys.stderr.flush()
emit(result(f"result {secret}"))
