"""A command in a sandbox without network that shows only the directories it is given:
for the worker's own steps in a workspace the agent could have rigged (git with its
hooks, filters and symlinks), which must never run with the worker's view of the host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli_exec.sandbox import layout
from cli_exec.sandbox.run import SandboxConfig


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
            *layout.system_args(),
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
        command = self.argv(argv, cwd)
        # bwrap dies with this worker (the sandbox dies with bwrap: --die-with-parent).
        # setpriv becomes the sandbox's user and then arms that (a credential change
        # clears it), without Popen's user= or a preexec_fn: either costs a full fork of
        # the worker per call instead of a vfork.
        setpriv = shutil.which("setpriv")
        become: dict[str, Any] = {}
        if setpriv is not None:
            who = credential_args(*host_user) if host_user else []
            command = [setpriv, *who, "--pdeathsig", "KILL", "--", *command]
        elif host_user is not None:
            become = {"user": host_user[0], "group": host_user[1], "extra_groups": []}
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


def credential_args(uid: int, gid: int) -> list[str]:
    """setpriv's arguments to become `uid`:`gid` with no supplementary groups."""
    return [f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
