"""Reports its environment and working directory."""

import os

from _stream import emit, result

emit({"type": "system", "subtype": "env", "env": dict(os.environ), "cwd": os.getcwd()})
emit(result("ok"))
