"""How a sandbox's first process is started: through /bin/sh and setpriv.

Everything the run's first process needs before bubblewrap (its cgroups, the sandbox's
host user, the parent-death signal, ignored stop signals) is done by these two small
programs rather than by a pre-exec hook in the worker, so the worker starts it with a
vfork: a fork with a hook copies the whole (large) worker's page tables and has it take
a page fault for each page it writes afterwards, several milliseconds a run.

sh ignores the stop signals (bubblewrap's own processes outside must not die of them;
the sandbox's first process inside gets them and passes them on to the agent) and moves
itself into the run's cgroups while still privileged; setpriv then drops to the host
user and arms the parent-death signal last, since a change of user clears it; bubblewrap
arms its own (--die-with-parent). Before setpriv has armed it (a millisecond), a worker
dying leaves the launcher running alone: a held run then never starts its command (the
hold pipe reads end-of-file), and an unheld one has nobody to read its output.
"""

from __future__ import annotations

from collections.abc import Sequence

from gitops.command import GitUser, setpriv_prefix

SHELL = "/bin/sh"
JOIN_ERROR = "agentsite-sandbox: "
# $$ is the shell's pid, which exec keeps for setpriv, bubblewrap and the process group.
_SCRIPT = (
    "trap '' INT TERM\n"
    'while [ "$1" != -- ]; do\n'
    f'  echo $$ > "$1" || {{ echo "{JOIN_ERROR}cannot join the cgroup $1" >&2; exit 125; }}\n'
    "  shift\n"
    "done\n"
    "shift\n"
    'exec "$@"\n'
)


def launch_argv(
    argv: Sequence[str], *, cgroup_procs: Sequence[str], host_user: tuple[int, int] | None
) -> list[str]:
    """argv (bubblewrap's) started as described above; raises FileNotFoundError when
    setpriv (util-linux) is not installed: without it nothing would drop the user."""
    user = GitUser(*host_user) if host_user is not None else None
    setpriv = setpriv_prefix(user, die_with_caller=True)
    if setpriv is None:
        raise FileNotFoundError("setpriv (util-linux) is not installed; the sandbox needs it")
    return [SHELL, "-c", _SCRIPT, "agentsite-launch", *cgroup_procs, "--", *setpriv, *argv]
