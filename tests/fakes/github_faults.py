"""Scripted misbehaviour of the fake GitHub API (error answers, slow replies, hangs), its JSON
form for the control API, and the queue that hands faults out in order."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ANY_METHOD = "*"


class ControlInputError(ValueError):
    """A fault (or another control-API payload) that does not describe what it should."""


@dataclass(frozen=True)
class Fault:
    """What the next `times` requests matching `method` and `path` get instead of (or before)
    the normal answer.

    `path` is exact or has `*` segments ("/repos/*/*/issues/*/comments"); the query string is
    ignored. `status` None answers normally after the pause; otherwise the fake answers
    `status` with `headers` and `body` (None: GitHub's {"message": ...} JSON; a str is sent
    as text/html like GitHub's unicorn pages). The pause is `delay_s`, or until release() or
    close() when `hang`.
    """

    method: str
    path: str
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay_s: float = 0.0
    hang: bool = False
    times: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", self.method.upper())
        if not self.path.startswith("/"):
            raise ControlInputError(f"a fault path starts with '/', not {self.path!r}")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ControlInputError(f"status {self.status} is not an HTTP status")
        if self.times < 1:
            raise ControlInputError(f"times must be at least 1, not {self.times}")
        if self.delay_s < 0:
            raise ControlInputError(f"delay_s must not be negative, not {self.delay_s}")

    def matches(self, method: str, path: str) -> bool:
        return self.method in (ANY_METHOD, method.upper()) and path_matches(self.path, path)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: Any) -> Fault:
        if not isinstance(raw, dict):
            raise ControlInputError(f"a fault is a JSON object, not {raw!r}")
        unknown = set(raw) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ControlInputError(f"unknown fault fields {sorted(unknown)}")
        if not {"method", "path"} <= set(raw):
            raise ControlInputError(f"a fault needs method and path: {raw!r}")
        _check_types(raw)
        return cls(**raw)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# JSON from another process: the dataclass does not check types on its own.
_FIELD_CHECKS: dict[str, Callable[[Any], bool]] = {
    "method": lambda v: isinstance(v, str),
    "path": lambda v: isinstance(v, str),
    "status": lambda v: v is None or (type(v) is int),
    "headers": lambda v: (
        isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items())
    ),
    "body": lambda v: True,
    "delay_s": _is_number,
    "hang": lambda v: isinstance(v, bool),
    "times": lambda v: type(v) is int,
}


def _check_types(raw: dict[str, Any]) -> None:
    wrong = sorted(name for name, value in raw.items() if not _FIELD_CHECKS[name](value))
    if wrong:
        raise ControlInputError(f"fault fields of the wrong type: {wrong} in {raw!r}")


def path_matches(pattern: str, path: str) -> bool:
    """Exact match, where a `*` segment in `pattern` stands for any one non-empty segment."""
    wanted, actual = pattern.rstrip("/").split("/"), path.rstrip("/").split("/")
    if len(wanted) != len(actual):
        return False
    return all(w == a or (w == "*" and a) for w, a in zip(wanted, actual, strict=True))


class FaultQueue:
    """Faults in the order they were scripted; not thread-safe (the fake holds its lock)."""

    def __init__(self) -> None:
        self._pending: list[tuple[Fault, int]] = []

    def add(self, fault: Fault) -> None:
        self._pending.append((fault, fault.times))

    def take(self, method: str, path: str) -> Fault | None:
        """The oldest pending fault matching the request, using up one of its times."""
        for position, (fault, left) in enumerate(self._pending):
            if fault.matches(method, path):
                if left == 1:
                    del self._pending[position]
                else:
                    self._pending[position] = (fault, left - 1)
                return fault
        return None

    def pending(self) -> int:
        """How many requests are still scripted to misbehave."""
        return sum(left for _, left in self._pending)

    def clear(self) -> None:
        self._pending.clear()


class FaultScripting:
    """fail/slow/hang shorthands, shared by the in-process fake and its control client."""

    def script(self, fault: Fault) -> None:
        raise NotImplementedError

    def fail(
        self,
        method: str,
        path: str,
        *,
        status: int,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: Any = None,
        delay_s: float = 0.0,
    ) -> None:
        """The next `times` matching requests get `status` (after `delay_s`)."""
        headers = dict(headers or {})
        self.script(
            Fault(
                method,
                path,
                status=status,
                headers=headers,
                body=body,
                delay_s=delay_s,
                times=times,
            )
        )

    def slow(self, method: str, path: str, *, delay_s: float, times: int = 1) -> None:
        """The next `times` matching requests are answered normally after `delay_s`."""
        self.script(Fault(method, path, delay_s=delay_s, times=times))

    def hang(self, method: str, path: str, *, times: int = 1) -> None:
        """The next `times` matching requests get no answer until release() (then the normal
        one) or close() (then a hang-up)."""
        self.script(Fault(method, path, hang=True, times=times))
