"""Spare checkouts with real git: made, taken in a workspace's place, adopted on a branch."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from gitops import mirror as mirrors
from gitops import spare
from gitops import workspace as ws
from tests.gitops.repos import commit_in, git


@pytest.fixture
def spares(tmp_path: Path) -> spare.Spares:
    return spare.Spares(tmp_path / "spares", "o--r")


def main_tip(mirror: Path) -> str:
    return mirrors.refs(git, mirror)["refs/heads/main"]


def make_spare(spares: spare.Spares, mirror: Path) -> bool:
    return spare.replenish(git, spares, objects=mirror / "objects", start=main_tip(mirror),
                           origin="https://github.example/o/r.git", user=None)  # fmt: skip


def status(workspace: Path) -> str:
    return git("status", "--porcelain", "--untracked-files=all", cwd=workspace)


def test_a_taken_spare_is_the_workspace_on_its_branch_and_the_old_files_go_to_the_trash(
    tmp_path, mirror, spares
):
    assert make_spare(spares, mirror)
    workspace = tmp_path / "session-1"
    workspace.mkdir()
    (workspace / "half-written.txt").write_text("a killed attempt's")

    assert spare.take(spares, workspace)
    assert spare.adopt(git, workspace, branch="agentsite/1-fix") == main_tip(mirror)

    assert (workspace / "README.md").read_text() == "hello\n"
    assert not (workspace / "half-written.txt").exists()
    assert git("symbolic-ref", "HEAD", cwd=workspace).strip() == "refs/heads/agentsite/1-fix"
    assert ws.head(git, workspace) == main_tip(mirror)
    assert status(workspace) == ""
    assert git("branch", "--format=%(refname:short)", cwd=workspace).split() == ["agentsite/1-fix"]
    assert git("remote", "get-url", "origin", cwd=workspace).strip().endswith("/o/r.git")
    # Its objects are the mirror's, not copies.
    assert git("count-objects", cwd=workspace).startswith("0 objects")
    assert not spares.ready.exists()
    assert [p.name for p in spares.trash.iterdir()]  # the old workspace, until replenished

    assert make_spare(spares, mirror)
    assert list(spares.trash.iterdir()) == []
    assert spares.ready.is_dir() and status(spares.ready) == ""


def test_without_a_spare_nothing_moves(tmp_path, spares):
    workspace = tmp_path / "session-1"
    workspace.mkdir()
    (workspace / "kept.txt").write_text("x")
    assert not spare.take(spares, workspace)
    assert (workspace / "kept.txt").read_text() == "x"


def test_a_spare_made_before_the_branch_moved_on_is_checked_out_at_the_new_start(
    tmp_path, remote, mirror, spares
):
    assert make_spare(spares, mirror)
    seed = tmp_path / "seed"
    newer = commit_in(seed, {"src/app.py": "print('v2')\n", "NEW.md": "new\n"}, "newer")
    git("push", "-q", str(remote), "HEAD:refs/heads/main", cwd=seed)
    mirrors.refresh(git, mirror, str(remote), None, {"refs/heads/*": "refs/heads/*"})
    workspace = tmp_path / "session-2"

    assert spare.take(spares, workspace)
    assert spare.adopt(git, workspace, branch="agentsite/2-new") != newer
    assert status(workspace) == ""  # still the spare's files, on the session's branch
    ws.check_out(git, workspace, objects=mirror / "objects", branch="agentsite/2-new", start=newer)

    assert ws.head(git, workspace) == newer
    assert (workspace / "src" / "app.py").read_text() == "print('v2')\n"
    assert (workspace / "NEW.md").exists()
    assert status(workspace) == ""


def test_of_concurrent_takers_one_gets_the_spare(tmp_path, mirror, spares):
    assert make_spare(spares, mirror)
    workspaces = [tmp_path / f"session-{i}" for i in range(8)]
    for workspace in workspaces:
        workspace.mkdir()
    barrier = threading.Barrier(len(workspaces))
    taken: list[Path] = []

    def take(workspace: Path) -> None:
        barrier.wait()
        if spare.take(spares, workspace):
            taken.append(workspace)

    threads = [threading.Thread(target=take, args=(w,)) for w in workspaces]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(taken) == 1
    assert (taken[0] / "README.md").exists()
    others = [w for w in workspaces if w not in taken]
    assert all(w.is_dir() and not any(w.iterdir()) for w in others)  # left as they were


def test_one_maker_at_a_time_and_a_killed_makers_leftovers_are_replaced(mirror, spares):
    spares.building.mkdir(parents=True)
    (spares.building / "partial").write_text("a maker killed midway")
    with spare._exclusive(spares) as mine:
        assert mine
        assert not make_spare(spares, mirror)  # someone else holds it: skip, do not wait
        assert not spares.ready.exists()
    assert make_spare(spares, mirror)
    assert not spares.building.exists()
    assert not (spares.ready / "partial").exists()
    assert (spares.ready / "README.md").read_text() == "hello\n"
    assert make_spare(spares, mirror)  # one already there: nothing to do
