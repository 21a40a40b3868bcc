"""Running git: a clean, explicit environment, credentials only in memory, errors typed.

Nothing of the caller's git configuration applies (no global or system config), git
never prompts, and a token travels only as an HTTP header scoped to its remote, through
`GIT_CONFIG_*` variables of that one git process: never in a URL, `.git/config`, a file
or an argument another process could read.
"""

from __future__ import annotations

import base64
import errno
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

DEFAULT_TIMEOUT_S = 600.0
_STDERR_TAIL = 2000


class GitErrorKind(StrEnum):
    NOT_FOUND = "not_found"  # repository or ref missing, or no access (GitHub says 404)
    AUTH = "auth"  # credentials refused
    NETWORK = "network"  # unreachable, timed out, 5xx: worth retrying
    REJECTED = "rejected"  # push refused: the remote moved on
    CONFLICT = "conflict"  # a rebase could not apply
    DISK_FULL = "disk_full"
    UNSTARTED = "unstarted"  # git, or the sandbox around it, could not be started
    OTHER = "other"


class GitError(RuntimeError):
    def __init__(self, kind: GitErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind

    @property
    def transient(self) -> bool:
        return self.kind in (GitErrorKind.NETWORK, GitErrorKind.UNSTARTED)


@dataclass(frozen=True)
class GitAuth:
    """A token for one remote (scheme://host[:port]/), sent as HTTP basic auth."""

    remote: str
    token: str
    username: str = "x-access-token"

    def config(self) -> dict[str, str]:
        parts = urlsplit(self.remote)
        scope = f"{parts.scheme}://{parts.netloc}/"
        basic = base64.b64encode(f"{self.username}:{self.token}".encode()).decode()
        return {f"http.{scope}.extraHeader": f"Authorization: Basic {basic}"}


@dataclass(frozen=True)
class GitUser:
    """Whom git runs as (uid, gid), so that a sandbox's user owns what it creates."""

    uid: int
    gid: int


_BASE_CONFIG = {
    # Workspaces belong to the sandbox's user, and git refuses repositories owned by
    # someone else unless told they are safe.
    "safe.directory": "*",
    "advice.detachedHead": "false",
    "init.defaultBranch": "main",
    "gc.auto": "0",  # a shared mirror's objects must never vanish under its clones
    "core.hooksPath": "/dev/null",  # no hook of a cloned repository ever runs here
    "protocol.file.allow": "always",
    "credential.helper": "",
}


def git_env(config: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment of one git process."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": "/nonexistent",
        "LC_ALL": "C",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
    }
    items = list({**_BASE_CONFIG, **(config or {})}.items())
    env["GIT_CONFIG_COUNT"] = str(len(items))
    for index, (key, value) in enumerate(items):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


class Runner(Protocol):
    """Runs one command and returns it finished (a plain subprocess on the host, or the
    same command inside a sandbox that sees only the repositories it needs)."""

    def __call__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        input_bytes: bytes | None,
        timeout_s: float,
    ) -> subprocess.CompletedProcess[bytes]: ...


@dataclass(frozen=True)
class HostRunner:
    """git on this machine, as `user` when given (a root worker becoming the sandbox's
    user, so that what git creates belongs to it)."""

    user: GitUser | None = None

    def __call__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        input_bytes: bytes | None,
        timeout_s: float,
    ) -> subprocess.CompletedProcess[bytes]:
        argv, become = as_user(list(argv), self.user)
        return subprocess.run(  # noqa: S603 - argv of our own making, no shell
            argv,
            cwd=cwd,
            env=dict(env),
            input=input_bytes,
            capture_output=True,
            timeout=timeout_s,
            check=False,
            **become,
        )


def setpriv_prefix(user: GitUser | None, *, die_with_caller: bool) -> list[str] | None:
    """The setpriv command line (up to its "--") that runs what follows as `user` and, with
    `die_with_caller`, killed when the calling thread ends (armed after the change of
    user, which would clear it); None when setpriv is not installed."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    who = [f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups"] if user else []
    death = ["--pdeathsig", "KILL"] if die_with_caller else []
    return [setpriv, *who, *death, "--"]


def as_user(
    argv: list[str], user: GitUser | None, *, die_with_caller: bool = False
) -> tuple[list[str], dict[str, Any]]:
    """(argv, Popen arguments) that run argv as `user` and, with `die_with_caller`, killed
    when the calling thread ends. Through setpriv when there is one: Popen's user= or a
    preexec_fn costs a full fork of the (large) worker per call instead of a vfork."""
    if user is None and not die_with_caller:
        return argv, {}
    prefix = setpriv_prefix(user, die_with_caller=die_with_caller)
    if prefix is None:
        become = {"user": user.uid, "group": user.gid, "extra_groups": []} if user else {}
        return argv, become
    return [*prefix, *argv], {}


@dataclass(frozen=True)
class Git:
    """git commands through one runner, with one base configuration."""

    runner: Runner = HostRunner()
    config: Mapping[str, str] = field(default_factory=dict)

    def __call__(
        self,
        *args: str,
        cwd: Path,
        auth: GitAuth | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        input_bytes: bytes | None = None,
    ) -> str:
        """Run `git args` and return its stdout; raise GitError with a kind on failure."""
        return self.run(
            ["git", *args], cwd=cwd, auth=auth, timeout_s=timeout_s, input_bytes=input_bytes
        )

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        auth: GitAuth | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        input_bytes: bytes | None = None,
    ) -> str:
        """Any command (git, or a shell step of a repository operation) in git's env."""
        env = git_env({**self.config, **(auth.config() if auth else {})})
        what = argv[1] if argv[0] == "git" and len(argv) > 1 else argv[0]
        try:
            done = self.runner(argv, cwd=cwd, env=env, input_bytes=input_bytes, timeout_s=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise GitError(
                GitErrorKind.NETWORK, f"git {what} timed out after {timeout_s:g} s"
            ) from exc
        except OSError as exc:
            kind = GitErrorKind.DISK_FULL if exc.errno == errno.ENOSPC else GitErrorKind.UNSTARTED
            raise GitError(kind, f"git {what} could not run: {exc}") from exc
        if done.returncode != 0:
            stderr = done.stderr.decode("utf-8", "replace").strip()
            # Some verdicts are on stdout (push --porcelain: "[rejected] (fetch first)").
            stdout = done.stdout.decode("utf-8", "replace")
            kind = classify(f"{stderr}\n{stdout}")
            raise GitError(kind, f"git {what} failed: {_last_lines(stderr)}")
        return done.stdout.decode("utf-8", "replace")


def _last_lines(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("hint:")]
    return " / ".join(lines[-3:])[-_STDERR_TAIL:] or "no message"


def classify(stderr: str) -> GitErrorKind:
    """What kind of failure git's message describes (LC_ALL=C keeps it English)."""
    text = stderr.lower()
    if "no space left on device" in text or "disk quota exceeded" in text:
        return GitErrorKind.DISK_FULL
    if "failed to execute" in text or text.startswith("bwrap: "):
        return GitErrorKind.UNSTARTED  # the sandbox around git (setpriv, bwrap) did not start
    if "[rejected]" in text or "non-fast-forward" in text or "fetch first" in text:
        return GitErrorKind.REJECTED
    if "conflict" in text and ("rebase" in text or "merge" in text or "could not apply" in text):
        return GitErrorKind.CONFLICT
    if any(
        phrase in text
        for phrase in (
            "authentication failed",
            "http 401",
            "error: 401",
            "requested url returned error: 401",
            "could not read username",
            "returned error: 403",
        )
    ):
        return GitErrorKind.AUTH
    if any(
        phrase in text
        for phrase in (
            "not found",
            "returned error: 404",
            "does not appear to be a git repository",
            "couldn't find remote ref",
            "remote ref does not exist",
            "unknown revision",
            "bad revision",
            "not a valid object name",
            "invalid reference",
        )
    ):
        return GitErrorKind.NOT_FOUND
    if any(
        phrase in text
        for phrase in (
            "could not resolve host",
            "failed to connect",
            "connection refused",
            "connection timed out",
            "operation timed out",
            "returned error: 5",
            "the remote end hung up",
            "early eof",
            "rpc failed",
            "connection reset",
            "unable to access",
        )
    ):
        return GitErrorKind.NETWORK
    return GitErrorKind.OTHER
