"""Builds child environments from explicit values only: nothing leaks from the worker's."""

from __future__ import annotations

from collections.abc import Mapping


class InvalidEnvironmentError(ValueError):
    """A name or value that execve cannot carry, or that would be silently mangled."""


def compose_env(*layers: Mapping[str, str | None]) -> dict[str, str]:
    """Merge layers left to right; a None value removes the name.

    The result is exactly what the child gets: callers list every variable they mean
    to pass, which is what keeps the Django secret and database URL out of the CLI.
    """
    env: dict[str, str] = {}
    for layer in layers:
        for name, value in layer.items():
            _check(name, value)
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
    return env


def _check(name: str, value: str | None) -> None:
    if not name or "=" in name or "\0" in name:
        raise InvalidEnvironmentError(f"invalid environment variable name {name!r}")
    if value is not None and "\0" in value:
        raise InvalidEnvironmentError(f"environment variable {name} contains a NUL byte")
