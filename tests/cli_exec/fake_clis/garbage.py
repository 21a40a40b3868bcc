"""Invalid UTF-8, broken JSON, non-objects, an over-long line, then valid lines."""

import json
import sys

from _stream import delta, result

out = sys.stdout.buffer
out.write(b'{"type": "system", "subtype": "init", "session_id": "s"}\n')
out.write(b"\xff\xfe not utf-8 \xc3\x28\n")
out.write(b'{"type": "assistant", "message": \n')
out.write(b"[1, 2, 3]\n")
out.write(b'"just a string"\n')
out.write(b'{"type": "brand_new_thing", "x": 1}\n')
out.write(b'{"type": ["odd"]}\n')
out.write(b"\n")
out.write(b"A" * int(sys.argv[1]) + b"\n")
out.write(json.dumps(delta("still parsed")).encode() + b"\n")
out.write(json.dumps(result("ok")).encode())  # no final newline: EOF ends the line
out.flush()
