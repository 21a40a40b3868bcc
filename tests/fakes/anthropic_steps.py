"""Script steps for the fake Messages API, and their JSON form for the control API."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass(frozen=True)
class Text:
    """A streamed text reply ending the turn; `delay_s` is waited between chunks."""

    text: str
    chunk_chars: int = 8
    delay_s: float = 0.0


@dataclass(frozen=True)
class ToolUse:
    """An optional text block, then one tool_use block; stop_reason "tool_use"."""

    name: str
    input: dict[str, Any]
    text: str | None = None


@dataclass(frozen=True)
class Error:
    """An HTTP error with the real API's JSON error body."""

    status: int
    error_type: str = ""
    message: str = "scripted error from the fake Anthropic API"
    retry_after_s: float | None = None

    def __post_init__(self) -> None:
        if not self.error_type:
            derived = _ERROR_TYPES.get(self.status, "api_error")
            object.__setattr__(self, "error_type", derived)


@dataclass(frozen=True)
class Hang:
    """Headers and message_start, then silence until release()/close() or a disconnect."""


Step = Text | ToolUse | Error | Hang

_KINDS: dict[str, type[Step]] = {"text": Text, "tool_use": ToolUse, "error": Error, "hang": Hang}
_KIND_OF = {cls: kind for kind, cls in _KINDS.items()}


class StepFormatError(ValueError):
    """A control-API step dict that does not describe a step."""


def step_to_dict(step: Step) -> dict[str, Any]:
    return {"kind": _KIND_OF[type(step)], **dataclasses.asdict(step)}


def step_from_dict(raw: dict[str, Any]) -> Step:
    if not isinstance(raw, dict):
        raise StepFormatError(f"a step is a JSON object, not {raw!r}")
    fields = dict(raw)
    cls = _KINDS.get(fields.pop("kind", None))
    if cls is None:
        raise StepFormatError(f"unknown step kind in {raw!r}; expected one of {sorted(_KINDS)}")
    try:
        return cls(**fields)
    except TypeError as exc:
        raise StepFormatError(f"bad fields for {cls.__name__}: {exc}") from exc
