"""A new repository-less session's workspace: copied from the machine's template, made
once by git, equal to what git makes of an empty directory, owned by the sandbox's user."""

from __future__ import annotations

import errno
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.test import override_settings

from gitops import Git, GitError, GitErrorKind, GitUser, HostRunner
from gitops import workspace as ws
from tasks_app.services import sandboxing
from tasks_app.services.workspaces import scratch

git = Git()


@dataclass
class CountingRunner:
    """The worker's own git, counting the commands it starts."""

    started: list[list[str]] = field(default_factory=list)

    def __call__(self, argv, **kwargs) -> subprocess.CompletedProcess[bytes]:
        self.started.append(list(argv))
        return HostRunner()(argv, **kwargs)


@pytest.fixture
def root(tmp_path: Path, monkeypatch) -> Path:
    runner = CountingRunner()
    monkeypatch.setattr(scratch, "host_git", lambda: Git(runner))
    with override_settings(AGENT_WORKSPACE_ROOT=str(tmp_path), AGENT_SANDBOX="on"):
        yield tmp_path


def new_workspace(root: Path, name: str) -> Path:
    workspace = root / name
    workspace.mkdir()
    return workspace


def owners(directory: Path) -> set[tuple[int, int]]:
    paths = [directory / ".git", *(directory / ".git").rglob("*")]
    return {(p.lstat().st_uid, p.lstat().st_gid) for p in paths}


def test_new_workspaces_are_copies_of_one_template_made_once_by_git(root):
    made = new_workspace(root, "by-git")
    expected = ws.check_out_saved(git, made, saved="", branch="main")
    starts = [scratch.first_checkout(new_workspace(root, f"s{n}"), "main") for n in range(3)]
    assert starts == [expected] * 3
    # One git start (the template's script) for three sessions; none of its own each.
    assert [argv[0] for argv in scratch.host_git().runner.started] == ["sh"]
    for n in range(3):
        workspace = root / f"s{n}"
        assert ws.head(git, workspace) == expected
        assert git("status", "--porcelain", "--ignored", cwd=workspace) == ""
        assert git("symbolic-ref", "HEAD", cwd=workspace).strip() == "refs/heads/main"
    template = root / scratch.TEMPLATES_DIR / "main"
    assert (template / scratch.START_FILE).read_text() == expected
    # Only the template is left where it was built: no half-built sibling.
    assert sorted(p.name for p in template.parent.iterdir()) == ["main"]


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root worker hands files to another user")
def test_a_root_workers_copy_belongs_to_the_sandboxs_user_and_the_template_to_the_worker(root):
    workspace = new_workspace(root, "s")
    scratch.first_checkout(workspace, "main")
    assert owners(workspace) == {sandboxing.sandbox_host_user()}
    assert owners(root / scratch.TEMPLATES_DIR / "main") == {(0, 0)}


def test_a_template_another_process_made_meanwhile_is_taken_and_the_copy_dropped(root):
    scratch.first_checkout(new_workspace(root, "first"), "main")
    path = root / scratch.TEMPLATES_DIR / "main"
    # A sibling that looked before the first one renamed its template into place.
    scratch._make(path, "main")
    assert sorted(p.name for p in path.parent.iterdir()) == ["main"]
    assert len(scratch.host_git().runner.started) == 2


def test_a_removed_template_is_made_again(root):
    first = scratch.first_checkout(new_workspace(root, "first"), "main")
    subprocess.run(["rm", "-rf", str(root / scratch.TEMPLATES_DIR)], check=True)
    assert scratch.first_checkout(new_workspace(root, "second"), "main") == first
    assert len(scratch.host_git().runner.started) == 2


def test_something_else_in_the_templates_place_fails_as_a_git_error_and_leaves_nothing(root):
    blocker = root / scratch.TEMPLATES_DIR / "main"
    blocker.mkdir(parents=True)
    (blocker / "unrelated").write_text("x")
    workspace = new_workspace(root, "s")
    with pytest.raises(GitError) as failed:
        scratch.first_checkout(workspace, "main")
    assert failed.value.kind is GitErrorKind.OTHER and "template" in str(failed.value)
    assert list(workspace.iterdir()) == []
    assert sorted(p.name for p in blocker.parent.iterdir()) == ["main"]


@pytest.mark.parametrize(
    ("error", "kind"), [(errno.ENOSPC, GitErrorKind.DISK_FULL), (errno.EPERM, GitErrorKind.OTHER)]
)
def test_a_copy_that_fails_half_way_leaves_no_half_repository(tmp_path, monkeypatch, error, kind):
    template = tmp_path / "template"
    template.mkdir()
    ws.check_out_saved(git, template, saved="", branch="main")
    workspace = tmp_path / "s"
    workspace.mkdir()

    def fail(*args) -> None:
        raise OSError(error, os.strerror(error))

    monkeypatch.setattr(os, "lchown", fail)  # after the files are copied
    with pytest.raises(GitError) as failed:
        ws.copy_repository(template, workspace, GitUser(54321, 54321))
    assert failed.value.kind is kind
    assert list(workspace.iterdir()) == []
