"""One sandboxed run: its gateway and proxy, its cgroups, and the bubblewrap command line
that wraps a CliCommand. Use as a context manager around the CliRun it wraps.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

from cli_exec.runner import CliCommand
from cli_exec.sandbox import launch, layout
from cli_exec.sandbox.cgroups import NO_LIMITS, LimitSupport, ResourceLimits, RunGroups
from cli_exec.sandbox.egress import EgressPolicy
from cli_exec.sandbox.gateway import ModelCredential
from cli_exec.sandbox.network import (
    MODEL_SOCKET,
    PROXY_SOCKET,
    RunNetwork,
    SandboxNetwork,
    sandbox_network,
)

INNER_SOURCE = Path(__file__).with_name("inner.py").read_bytes()


class SandboxStartError(RuntimeError):
    """The sandbox for a run could not be built; the run must not start unsandboxed."""


@dataclass(frozen=True)
class SandboxConfig:
    bwrap: str
    python: str  # the interpreter inside that runs inner.py: the system's
    host_user: tuple[int, int] | None  # (uid, gid) to become before bwrap; None: stay
    limits: ResourceLimits
    limit_support: LimitSupport
    etc_view: str  # the directory shown as /etc (etc_view.ensure)


@dataclass(frozen=True)
class RunSpec:
    name: str  # unique per run: names its cgroups and its socket directory
    workspace: Path
    config_dir: Path
    cli: str
    upstream: str  # the model API the gateway forwards to
    credential: ModelCredential
    allow_hosts: tuple[str, ...] = ()
    read_only: tuple[Path, ...] = ()  # more host directories shown read-only


def cli_install_dir(cli: str) -> tuple[Path, Path]:
    """(the directory to show read-only, the binary's path) for a CLI path or name.

    An npm install's binary lives in `<package>/bin/`; the whole package is shown, under
    its real path, so the binary finds its own files where it expects them.
    """
    found = shutil.which(cli) if os.sep not in cli else cli
    if found is None or not os.path.exists(found):
        raise SandboxStartError(f"the CLI {cli!r} was not found")
    binary = Path(os.path.realpath(found))
    parent = binary.parent
    return (parent.parent if parent.name == "bin" else parent), binary


def _shown_by_system(path: Path) -> bool:
    """Under a directory every sandbox already shows read-only (a global npm install)."""
    return any(path.is_relative_to(system) for system in layout.SYSTEM_DIRS)


def _check_install_apart(install: Path, spec: RunSpec) -> None:
    """The CLI's install is shown whole: it must not hold any session's files."""
    for path in (spec.workspace, spec.config_dir):
        if Path(os.path.realpath(path)).is_relative_to(install):
            raise SandboxStartError(
                f"the CLI's install directory {install} contains {path}: showing it would "
                "show other sessions' files; install the CLI outside AGENT_WORKSPACE_ROOT"
            )


def _memfd(name: str, content: bytes) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.write(fd, content)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _open_dir(path: Path) -> int:
    return os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


class SandboxRun:
    def __init__(
        self, config: SandboxConfig, spec: RunSpec, network: SandboxNetwork | None = None
    ) -> None:
        self.config = config
        self.spec = spec
        self._network = network
        self._run_dir: Path | None = None
        self._net: RunNetwork | None = None
        self._groups: RunGroups | None = None
        self._fds: list[int] = []
        self._mounts: list[layout.FdMount] = []
        self._files: list[layout.FdFile] = []
        self._cli_binary: Path | None = None
        self._hold_write: int | None = None  # the worker's end of a held run's pipe

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> SandboxRun:
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _open(self) -> None:
        spec, config = self.spec, self.config
        install, self._cli_binary = cli_install_dir(spec.cli)
        _check_install_apart(install, spec)
        try:
            self._run_dir = Path(tempfile.mkdtemp(prefix=f"agentsite-{spec.name}-"))
            self._own(spec.workspace, spec.config_dir, self._run_dir)
            self._own_tree(spec.config_dir)
            network = self._network or sandbox_network()
            self._net = network.open_run(
                run_dir=self._run_dir,
                upstream=spec.upstream,
                credential=spec.credential,
                policy=EgressPolicy.from_hosts(spec.allow_hosts),
                label=spec.name,
            )
            self._own(self._run_dir / MODEL_SOCKET, self._run_dir / PROXY_SOCKET)
            if config.limits != NO_LIMITS:
                self._groups = RunGroups.create(spec.name, config.limits, config.limit_support)
            # Read-only ones first: one mounted later over a parent would hide the rest.
            if not _shown_by_system(install):
                self._mount(install, writable=False)
            for path in spec.read_only:
                self._mount(path, writable=False)
            self._mount(spec.workspace, writable=True)
            self._mount(spec.config_dir, writable=True)
            self._mount(self._run_dir, writable=False, dest=layout.RUN_DIR)
        except OSError as exc:
            raise SandboxStartError(f"the sandbox could not be prepared: {exc}") from exc
        self._file(layout.INNER_SCRIPT, INNER_SOURCE)

    def close(self) -> None:
        """Revoke the token, cut the tunnels, remove cgroups and sockets; idempotent."""
        self.release(start=False)
        if self._net is not None:
            (self._network or sandbox_network()).close_run(self._net)
            self._net = None
        if self._groups is not None:
            self._groups.remove()
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None

    # -- what the caller uses ------------------------------------------------------------

    @property
    def model_env(self) -> dict[str, str]:
        """The CLI's model settings inside: the gateway's address and the per-run token."""
        if self._net is None:
            raise RuntimeError("the sandbox run is not open")
        return {
            "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{layout.MODEL_PORT}",
            self.spec.credential.token_variable: self._net.token,
        }

    @property
    def token(self) -> str:
        if self._net is None:
            raise RuntimeError("the sandbox run is not open")
        return self._net.token

    @property
    def refusals(self) -> list[str]:
        """What the egress proxy refused so far, for the run's log."""
        return list(self._net.proxy.refusals) if self._net is not None else []

    def wrap(self, command: CliCommand, *, held: bool = False) -> CliCommand:
        """The same command, run inside this sandbox. `held`: the sandbox starts at once
        but the command inside only on release(), so that the caller can fill the
        workspace while the sandbox starts."""
        if self._run_dir is None or self._cli_binary is None:
            raise RuntimeError("the sandbox run is not open")
        hold_fd = self._hold() if held else None
        proxy = f"http://127.0.0.1:{layout.PROXY_PORT}"
        env = {
            **command.env,
            "HOME": layout.HOME,
            "TMPDIR": "/tmp",  # noqa: S108 - the sandbox's own private tmpfs
            "USER": "agent",
            **{name: proxy for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")},
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
        forwards = {
            layout.MODEL_PORT: f"{layout.RUN_DIR}/{MODEL_SOCKET}",
            layout.PROXY_PORT: f"{layout.RUN_DIR}/{PROXY_SOCKET}",
        }
        inner_command = [str(self._cli_binary), *command.argv[1:]]
        bwrap = [
            self.config.bwrap,
            *layout.namespace_args(),
            *layout.system_args(self.config.etc_view),
            *layout.mount_args(self._mounts, self._files),
            "--chdir", os.path.realpath(command.cwd),
            "--",
            *layout.inner_args(self.config.python, forwards, inner_command, hold_fd),
        ]  # fmt: skip
        try:
            argv = launch.launch_argv(
                bwrap,
                cgroup_procs=self._groups.procs_files if self._groups is not None else (),
                host_user=self.config.host_user,
            )
        except FileNotFoundError as exc:
            raise SandboxStartError(str(exc)) from exc
        return replace(
            command,
            argv=argv,
            env=env,
            secrets=(*command.secrets, self.token),
            pass_fds=(*command.pass_fds, *self._fds),
            arms_death_signal=True,
        )

    def release(self, *, start: bool = True) -> None:
        """Let a held command start (`start`), or end the held run without it; once."""
        if self._hold_write is None:
            return
        fd, self._hold_write = self._hold_write, None
        try:
            if start:
                os.write(fd, b"g")
        except BrokenPipeError:
            pass  # the sandbox ended before its command was let go (bwrap failed)
        finally:
            os.close(fd)

    def limit_hit(self) -> str | None:
        """The resource limit the run ran into (a sentence fragment), or None."""
        return self._groups.limit_hit() if self._groups is not None else None

    # -- helpers -------------------------------------------------------------------------

    def _hold(self) -> int:
        """The pipe a held run waits on; returns the descriptor its first process reads."""
        read_fd, self._hold_write = os.pipe2(os.O_CLOEXEC)
        self._fds.append(read_fd)
        return read_fd

    def _own(self, *paths: Path) -> None:
        if self.config.host_user is None:
            return
        uid, gid = self.config.host_user
        for path in paths:
            os.lchown(path, uid, gid)

    def _own_tree(self, root: Path) -> None:
        """The worker wrote some of it (a restored transcript); the agent must write it."""
        if self.config.host_user is None:
            return
        uid, gid = self.config.host_user
        for directory, dirs, files in os.walk(root):
            for name in dirs + files:
                path = os.path.join(directory, name)
                if os.lstat(path).st_uid != uid:
                    os.lchown(path, uid, gid)

    def _mount(self, path: Path, *, writable: bool, dest: str | None = None) -> None:
        fd = _open_dir(path)
        self._fds.append(fd)
        self._mounts.append(layout.FdMount(fd, dest or os.path.realpath(path), writable))

    def _file(self, dest: str, content: bytes) -> None:
        fd = _memfd(os.path.basename(dest), content)
        self._fds.append(fd)
        self._files.append(layout.FdFile(fd, dest))
