"""Can this machine build a sandbox? Starts an empty one, the way a run would."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from cli_exec.sandbox import launch, layout
from cli_exec.sandbox.run import SandboxConfig

PROBE_TIMEOUT_S = 10.0


class SandboxUnavailable(RuntimeError):
    """The reason, in words an operator can act on."""


def probe(config: SandboxConfig, must_reach: Sequence[Path] = ()) -> str:
    """A description of the sandbox and its limits; raises SandboxUnavailable.

    `must_reach`: host directories every run binds (the workspace root, the CLI's
    install), which the sandbox's user must be able to walk down to.
    """
    binds = [arg for path in must_reach for arg in ("--ro-bind", str(path), str(path))]
    bwrap = [
        config.bwrap,
        *layout.namespace_args(),
        *layout.system_args(config.etc_view),
        *binds,
        "--",
        config.python, "-I", "-S", "-c", "import socket; socket.socket().close()",
    ]  # fmt: skip
    host_user = config.host_user
    if not os.access(config.bwrap, os.X_OK):  # else only the launcher would say so
        raise SandboxUnavailable(
            f"bubblewrap ({config.bwrap}) did not start: not found or not executable"
        )
    try:
        # Started the way a run's sandbox is (through the same launcher, as the same user).
        argv = launch.launch_argv(bwrap, cgroup_procs=(), host_user=host_user)
    except FileNotFoundError as exc:
        raise SandboxUnavailable(str(exc)) from exc
    try:
        done = subprocess.run(  # noqa: S603 - our own argv
            argv,
            capture_output=True,
            timeout=PROBE_TIMEOUT_S,
            env={"PATH": "/usr/bin:/bin"},
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise SandboxUnavailable(f"bubblewrap ({config.bwrap}) did not start: {exc}") from exc
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = detail[-1] if detail else f"exit code {done.returncode}"
        if host_user is not None and "Permission denied" in reason:
            reason += (
                f" (sandboxes start as uid {host_user[0]}, which must be able to walk down"
                " to every directory a run binds)"
            )
        raise SandboxUnavailable(f"bubblewrap could not build a sandbox: {reason}")
    who = f"uid {host_user[0]}" if host_user else "the worker's uid"
    limits = config.limit_support.describe(config.limits)
    return f"bubblewrap as {who}; limits: {limits}"
