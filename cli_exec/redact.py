"""Removes known secret values from text before it is stored or streamed."""

from __future__ import annotations

import json
from collections.abc import Iterable

PLACEHOLDER = "[REDACTED]"
# Shorter values would match ordinary words and shred the transcript.
MIN_SECRET_LENGTH = 6


def _forms(secret: str) -> set[str]:
    # A secret echoed inside a JSON string is escaped; JS escapes only quotes, backslashes
    # and control characters, Python may also escape non-ASCII: cover both spellings.
    return {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    }


class Redactor:
    """Replaces every known secret, raw or JSON-escaped, with a placeholder."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if secret and len(secret) >= MIN_SECRET_LENGTH:
                forms |= _forms(secret)
        # Longest first, so a secret that contains another is replaced whole.
        self._forms: tuple[str, ...] = tuple(sorted(forms, key=len, reverse=True))

    @property
    def active(self) -> bool:
        return bool(self._forms)

    def redact_text(self, text: str) -> str:
        for form in self._forms:
            # `in` is a fast C scan; most text holds no secret, so replace rarely runs.
            if form in text:
                text = text.replace(form, PLACEHOLDER)
        return text
