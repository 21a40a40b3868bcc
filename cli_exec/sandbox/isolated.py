"""A command in a sandbox without network that shows only the directories it is given:
for the worker's own steps in a workspace the agent could have rigged (git with its
hooks, filters and symlinks), which must never run with the worker's view of the host.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cli_exec.sandbox import layout
from cli_exec.sandbox.run import SandboxConfig
from gitops.command import GitUser, as_user


@dataclass(frozen=True)
class IsolatedRunner:
    config: SandboxConfig
    writable: tuple[Path, ...]
    readable: tuple[Path, ...] = ()

    def argv(self, command: Sequence[str], cwd: Path) -> list[str]:
        binds: list[str] = []
        # Read-only ones first: one mounted later over a parent would hide the rest.
        for path in self.readable:
            binds += ["--ro-bind", os.path.realpath(path), os.path.realpath(path)]
        for path in self.writable:
            binds += ["--bind", os.path.realpath(path), os.path.realpath(path)]
        return [
            self.config.bwrap,
            *layout.namespace_args(),
            *layout.system_args(self.config.etc_view),
            *binds,
            "--remount-ro", "/",
            "--chdir", os.path.realpath(cwd),
            "--",
            *command,
        ]  # fmt: skip

    def __call__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        input_bytes: bytes | None,
        timeout_s: float,
    ) -> subprocess.CompletedProcess[bytes]:
        host_user = self.config.host_user
        # bwrap dies with this worker (the sandbox dies with bwrap: --die-with-parent).
        command, become = as_user(
            self.argv(argv, cwd),
            GitUser(*host_user) if host_user else None,
            die_with_caller=True,
        )
        return subprocess.run(  # noqa: S603 - our own argv
            command,
            cwd="/",
            env=dict(env),
            input=input_bytes,
            capture_output=True,
            timeout=timeout_s,
            check=False,
            start_new_session=True,
            **become,
        )
