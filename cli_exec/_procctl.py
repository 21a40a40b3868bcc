"""Low-level process control: spawning a supervised group, signalling it, reaping it."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1

# Resolved once at import: the pre-exec hook runs between fork and exec, where loading a
# library could deadlock on a lock some other thread of the worker held at fork time.
_libc = ctypes.CDLL(None, use_errno=True)
_prctl = getattr(_libc, "prctl", None)
if _prctl is not None:
    _prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    _prctl.restype = ctypes.c_int


class CliStartError(RuntimeError):
    """The CLI could not be started (missing binary, bad cwd, no permission)."""


def _child_setup(parent_pid: int) -> Callable[[], None]:
    def setup() -> None:
        # Ignored dispositions and blocked masks survive exec; a worker that ignores SIGINT
        # (as pool processes often do) would otherwise make the first stop step a no-op.
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The parent may have died before prctl ran; the signal would then never come.
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGKILL)

    return setup


@contextlib.contextmanager
def _no_blocked_signals() -> Iterator[None]:
    """A vforked child starts with its parent thread's signal mask, which survives exec."""
    blocked = signal.pthread_sigmask(signal.SIG_SETMASK, ())
    try:
        yield
    finally:
        if blocked:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def spawn_group(
    argv: Sequence[str],
    cwd: Path,
    env: Mapping[str, str],
    *,
    pass_fds: Sequence[int] = (),
    arms_death_signal: bool = False,
) -> subprocess.Popen[bytes]:
    """Start argv as the leader of a new session and process group, with all three pipes.

    The child gets default SIGINT and SIGTERM, no blocked signals and the parent-death
    signal, set by a pre-exec hook; unless `arms_death_signal`: a command that sets all
    this itself (the sandbox's launcher) is started with a vfork and no hook. `pass_fds`
    stay open across exec.
    """
    setup = None if arms_death_signal else _child_setup(os.getpid())
    try:
        with _no_blocked_signals() if setup is None else contextlib.nullcontext():
            return subprocess.Popen(  # noqa: S603 - argv is built by our own adapter, never a shell
                list(argv),
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
                close_fds=True,
                pass_fds=tuple(pass_fds),
                start_new_session=True,
                preexec_fn=setup,  # needed for PR_SET_PDEATHSIG; None lets Popen vfork
            )
    except (OSError, subprocess.SubprocessError) as exc:
        raise CliStartError(
            f"could not start {argv[0] if argv else '(empty argv)'}: {exc}"
        ) from exc


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Signal every member of the group; a group already gone is not an error.

    Callers must only do this while the leader is unreaped: until then the kernel cannot
    hand the group id to an unrelated process.
    """
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def has_exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it (its zombie pins the group id)."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        # Someone else (a SIGCHLD handler) reaped it; it is certainly gone.
        return True
    return info is not None


def open_pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when pid exits, so exit wakes the select loop."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None
