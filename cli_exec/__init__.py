"""Runs a coding-agent CLI as a supervised process group and types its output.

Pure Python: nothing here imports Django or reads the worker's environment; callers pass
every setting in.
"""

from cli_exec._procctl import CliStartError
from cli_exec.events import CliEvent, EventKind
from cli_exec.parser import parse_stdout_line
from cli_exec.redact import Redactor
from cli_exec.runner import CliCommand, CliRun, RunLimits, RunOutcome, StopReason

__all__ = [
    "CliCommand",
    "CliEvent",
    "CliRun",
    "CliStartError",
    "EventKind",
    "Redactor",
    "RunLimits",
    "RunOutcome",
    "StopReason",
    "parse_stdout_line",
]
