"""A well-behaved run: reads the prompt, streams an answer, uses a tool, reports a result."""

import hashlib
import sys

from _stream import delta, emit, init, result

prompt = sys.stdin.buffer.read()
init()
emit({"type": "stream_event", "event": {"type": "message_start", "message": {"id": "msg_1"}}})
emit(delta("Hel"))
emit(delta("lo"))
emit({"type": "stream_event", "event": {"type": "content_block_stop", "index": 0}})
emit(
    {
        "type": "assistant",
        "message": {
            "id": "msg_1",
            "content": [
                {"type": "text", "text": "Hello"},
                {"type": "tool_use", "id": "tu_1", "name": "Read", "input": {"path": "a"}},
            ],
        },
    }
)
emit(
    {
        "type": "user",
        "message": {"content": [{"type": "tool_result", "tool_use_id": "tu_1", "content": "x"}]},
    }
)
digest = hashlib.sha256(prompt).hexdigest()
emit(result(f"{len(prompt)} {digest}"))
