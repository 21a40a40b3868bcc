"""The sandbox's launcher (sh, then setpriv) does in the child what a pre-exec hook did:
joins the run's cgroups, ignores the stop signals, drops to the host user, arms the
parent-death signal, and starts with no signal blocked, though the worker vforks it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from cli_exec import _procctl
from cli_exec.sandbox.launch import JOIN_ERROR, launch_argv
from tests.cli_exec.conftest import assert_outlived_by_nothing

ROOT = Path(__file__).resolve().parents[2]
HOST_USER = (64100, 64100) if os.geteuid() == 0 else None
SHOW_SELF = (
    "import os\n"
    "status = dict(line.split(':', 1) for line in open('/proc/self/status'))\n"
    "print(os.getpid(), os.getuid(), os.getgroups(), status['SigIgn'].strip(),"
    " status['SigBlk'].strip())\n"
)


def _bit(mask_hex: str, sig: signal.Signals) -> bool:
    return bool(int(mask_hex, 16) >> (sig - 1) & 1)


def test_the_launched_command_is_in_its_cgroups_as_the_host_user_ignoring_stop_signals(
    tmp_path,
):
    # Plain files stand in for cgroup.procs: what matters is which pid goes there.
    procs = [tmp_path / "pids.procs", tmp_path / "memory.procs"]
    for path in procs:
        path.touch()
    argv = launch_argv(
        [sys.executable, "-I", "-S", "-c", SHOW_SELF],
        cgroup_procs=[str(p) for p in procs],
        host_user=HOST_USER,
    )
    started: list[subprocess.Popen[bytes]] = []
    outputs: list[tuple[bytes, bytes]] = []

    def spawn_with_a_signal_blocked() -> None:
        # A worker thread may block signals; the vforked child must not inherit that.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        started.append(_procctl.spawn_group(argv, tmp_path, {}, arms_death_signal=True))
        # The parent-death signal follows the spawning thread, not the process: it waits
        # for its child, as a worker's attempt does (leaving first would kill it).
        outputs.append(started[0].communicate(timeout=30))

    thread = threading.Thread(target=spawn_with_a_signal_blocked)
    thread.start()
    thread.join()
    out, err = outputs[0]
    assert started[0].returncode == 0, err
    pid, uid, groups, ignored, blocked = out.decode().split(maxsplit=4)
    assert int(pid) == started[0].pid  # sh and setpriv exec in place: one process
    assert [path.read_text().strip() for path in procs] == [pid, pid]
    assert _bit(ignored, signal.SIGINT) and _bit(ignored, signal.SIGTERM)
    assert int(blocked, 16) == 0
    if HOST_USER is not None:
        assert int(uid) == HOST_USER[0] and groups == "[]"


def test_a_cgroup_that_cannot_be_joined_stops_the_launch_saying_so(tmp_path):
    marker = tmp_path / "ran"
    missing = tmp_path / "gone" / "cgroup.procs"
    argv = launch_argv(["/usr/bin/touch", str(marker)], cgroup_procs=[str(missing)], host_user=None)
    done = subprocess.run(argv, capture_output=True, timeout=30, check=False)  # noqa: S603
    assert done.returncode == 125
    assert f"{JOIN_ERROR}cannot join the cgroup {missing}" in done.stderr.decode()
    assert not marker.exists()


def test_the_launched_command_dies_with_the_process_that_started_it(tmp_path):
    pid_file = tmp_path / "sleeper.pid"
    sleeper = Path(__file__).with_name("fake_clis") / "sleeper.py"
    argv = launch_argv(
        [sys.executable, str(sleeper), str(pid_file)], cgroup_procs=[], host_user=None
    )
    supervisor_script = (
        "import sys, time\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from pathlib import Path\n"
        "from cli_exec import _procctl\n"
        f"_procctl.spawn_group({argv!r}, Path('/'), {{}}, arms_death_signal=True)\n"
        "time.sleep(600)\n"
    )
    assert_outlived_by_nothing([sys.executable, "-c", supervisor_script], pid_file)
