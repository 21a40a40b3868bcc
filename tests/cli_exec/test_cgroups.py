"""The cgroup layout of a run where this machine cannot show it (cgroup v2, on a plain
directory standing in for the delegated tree), and what readiness says of the limits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cli_exec.sandbox import cgroups
from cli_exec.sandbox.cgroups import AGENTS_GROUP, LimitSupport, ResourceLimits, RunGroups

V2 = LimitSupport(pids="cgroup v2", memory="cgroup v2", cpu="cgroup v2")


@pytest.fixture
def v2_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "cgroup.subtree_control").write_text("cpu memory pids\n")
    monkeypatch.setattr(cgroups, "_v2_delegated_base", lambda: tmp_path)
    return tmp_path


def test_on_cgroup_v2_a_run_with_a_cpu_weight_is_made_inside_the_agents_group(v2_base):
    groups = RunGroups.create("t1a1", ResourceLimits(64, 256 * 1_048_576, 10), V2)
    agents = v2_base / AGENTS_GROUP
    run = agents / "agentsite-t1a1"
    assert groups.paths == [run]
    assert (agents / "cpu.weight").read_text() == "10"
    # Its runs can have limits only if the agents' group hands the controllers down.
    assert (agents / "cgroup.subtree_control").read_text() == "+cpu +pids +memory"
    assert (run / "pids.max").read_text() == "64"
    assert (run / "memory.max").read_text() == str(256 * 1_048_576)
    assert groups.procs_files == (str(run / "cgroup.procs"),)


def test_on_cgroup_v2_without_a_cpu_weight_a_run_stays_where_it_was(v2_base):
    groups = RunGroups.create("t1a1", ResourceLimits(64, None), V2)
    assert groups.paths == [v2_base / "agentsite-t1a1"]
    assert not (v2_base / AGENTS_GROUP).exists()


def test_a_cpu_weight_where_the_cpu_controller_is_not_delegated_is_left_out(v2_base):
    no_cpu = LimitSupport(pids="cgroup v2", memory="cgroup v2", cpu=None)
    groups = RunGroups.create("t1a1", ResourceLimits(64, None, 10), no_cpu)
    assert groups.paths == [v2_base / "agentsite-t1a1"]
    assert "cpu: none" in no_cpu.describe(ResourceLimits(64, None, 10))


def test_readiness_names_the_agents_cpu_weight_and_how_it_is_held():
    v1 = LimitSupport(pids="cgroup v1", memory="cgroup v1", cpu="cgroup v1")
    text = v1.describe(ResourceLimits(1024, 4096 * 1_048_576, 10))
    assert text == (
        "pids 1024 (cgroup v1), memory 4096 MiB (cgroup v1), agents' cpu weight 10 (cgroup v1)"
    )
    assert "cpu" not in v1.describe(ResourceLimits(1024, None))


def test_stale_run_groups_inside_the_agents_group_are_swept(v2_base):
    stale = v2_base / AGENTS_GROUP / "agentsite-t9a1"
    stale.mkdir(parents=True)
    old = 1_000_000_000
    os.utime(stale, (old, old))
    assert cgroups.sweep_stale(V2) == 1
    assert not stale.exists() and (v2_base / AGENTS_GROUP).is_dir()


def rewrite_in_place(path: Path, text: str) -> None:
    # As the kernel does: the same file (the same open descriptor) shows new counts.
    with path.open("r+") as file:
        file.write(text)
        file.truncate()


def test_on_cgroup_v2_limit_hits_are_read_from_the_counters_as_they_change(v2_base):
    groups = RunGroups.create("t1a1", ResourceLimits(64, 256 * 1_048_576), V2)
    run = v2_base / "agentsite-t1a1"
    (run / "pids.events").write_text("max 0\n")
    (run / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 0\n")
    assert groups.limit_hit() is None
    rewrite_in_place(run / "memory.events", "low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\n")
    assert groups.limit_hit() == "the sandbox's memory limit (256 MiB)"
    rewrite_in_place(run / "pids.events", "max 3\n")
    assert groups.limit_hit() == "the sandbox's process limit (64 processes)"
    opened = set(os.listdir("/proc/self/fd"))
    for name in ("pids.max", "memory.max", "memory.swap.max", "pids.events", "memory.events"):
        (run / name).unlink(missing_ok=True)  # a real group's files go with its rmdir
    groups.remove()
    assert len(opened - set(os.listdir("/proc/self/fd"))) == 2  # both counters closed
    assert groups.limit_hit() is None
