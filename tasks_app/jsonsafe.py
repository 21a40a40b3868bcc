"""A JSON encoder whose output PostgreSQL's jsonb accepts.

jsonb refuses the escape \\u0000, and CLI output or GitHub payloads may contain NUL
characters; they are stored as U+FFFD instead of failing the whole batch.
"""

import re
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

# \u0000 preceded by an even number of backslashes is an escaped NUL, not literal text.
_ESCAPED_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


class PostgresSafeJSONEncoder(DjangoJSONEncoder):
    def encode(self, o: Any) -> str:
        encoded = super().encode(o)
        if "\\u0000" not in encoded:
            return encoded
        return _ESCAPED_NUL.sub(r"\1\\ufffd", encoded)


def without_nul(text: str) -> str:
    """Text columns refuse NUL too."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text
