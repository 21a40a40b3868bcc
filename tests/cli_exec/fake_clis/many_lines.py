"""Prints N partial-text lines as fast as it can, then a result."""

import json
import sys

count = int(sys.argv[1])
template = {
    "type": "stream_event",
    "event": {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta"}},
}
out = sys.stdout
for i in range(count):
    template["event"]["delta"]["text"] = f"chunk {i}"
    out.write(json.dumps(template) + "\n")
out.write(json.dumps({"type": "result", "subtype": "success", "is_error": False}) + "\n")
out.flush()
