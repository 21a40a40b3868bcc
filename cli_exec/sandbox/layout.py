"""What a sandbox contains, as bubblewrap arguments: namespaces, and an allow-list of mounts.

Nothing of the host is visible unless listed here: the system's programs and libraries
read-only, a copy of a few named entries of /etc (etc_view.py), and whatever the run
binds from descriptors (its workspace, its CLI config dir, the CLI's install). The root
is an empty tmpfs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

INSIDE_UID = 1000
INSIDE_GID = 1000
HOSTNAME = "agentsite-sandbox"
HOME = "/home/agent"
RUN_DIR = "/run/agentsite"
INNER_SCRIPT = "/opt/agentsite/inner.py"
# Where, on the sandbox's own loopback, the CLI finds the model gateway and the proxy.
MODEL_PORT = 47770
PROXY_PORT = 47771

# On merged-/usr systems the top-level ones are symlinks, recreated as such.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Only what programs need to run, resolve libraries, verify TLS and look themselves up;
# never /etc whole (shadow, SSH host keys, TLS private keys, service configs live there).
ETC_ENTRIES = (
    "alternatives",
    "bash.bashrc",
    "ca-certificates",
    "ca-certificates.conf",
    "crypto-policies",
    "debian_version",
    "gitconfig",
    "host.conf",
    "inputrc",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "perl",
    "pki/tls/certs",
    "profile",
    "protocols",
    "services",
    "ssl/certs",
    "ssl/openssl.cnf",
    "terminfo",
    "timezone",
)
PASSWD = (
    f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
    f"agent:x:{INSIDE_UID}:{INSIDE_GID}:agent:{HOME}:/bin/bash\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
)
GROUP = f"root:x:0:\nagent:x:{INSIDE_GID}:\nnogroup:x:65534:\n"
HOSTS = f"127.0.0.1 localhost {HOSTNAME}\n::1 localhost ip6-localhost ip6-loopback\n"


@dataclass(frozen=True)
class FdMount:
    """A host directory, opened by the worker, shown inside at `dest`."""

    fd: int
    dest: str
    writable: bool


@dataclass(frozen=True)
class FdFile:
    """A read-only file inside whose content comes from a descriptor (a memfd)."""

    fd: int
    dest: str


def namespace_args() -> list[str]:
    return [
        "--unshare-all",  # user, mount, pid, net, ipc, uts and cgroup namespaces
        "--unshare-user",
        "--disable-userns",  # no nested user namespaces: less kernel surface
        "--die-with-parent",
        "--uid", str(INSIDE_UID),
        "--gid", str(INSIDE_GID),
        "--hostname", HOSTNAME,
    ]  # fmt: skip


def system_args(etc_view: str) -> list[str]:
    """The system's programs read-only, `etc_view` (see etc_view.py) as /etc, and the
    sandbox's own /proc, /dev and private tmpfs mounts."""
    args: list[str] = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    args += ["--ro-bind", etc_view, "/etc"]
    # Paths inside the sandbox: a private tmpfs each, not the host's /tmp.
    args += [
        "--proc", "/proc",  # a new procfs: only this sandbox's processes
        "--dev", "/dev",
        "--tmpfs", "/tmp",  # noqa: S108
        "--tmpfs", "/var/tmp",  # noqa: S108
        "--tmpfs", HOME,
    ]  # fmt: skip
    return args


def mount_args(mounts: Sequence[FdMount], files: Sequence[FdFile]) -> list[str]:
    args: list[str] = []
    for mount in mounts:
        args += ["--bind-fd" if mount.writable else "--ro-bind-fd", str(mount.fd), mount.dest]
    for file in files:
        args += ["--ro-bind-data", str(file.fd), file.dest]
    # Last: the root tmpfs (the directories bwrap made for the mounts above) becomes
    # read-only, so the only writable places are the workspace, the CLI config dir and
    # the private tmpfs mounts.
    return [*args, "--remount-ro", "/"]


def inner_args(
    python: str, forwards: dict[int, str], command: Sequence[str], hold_fd: int | None = None
) -> list[str]:
    args = [python, "-I", "-S", INNER_SCRIPT]
    if hold_fd is not None:
        args += ["--hold-fd", str(hold_fd)]
    for port, path in forwards.items():
        args += ["--forward", f"{port}={path}"]
    return [*args, "--", *command]
