"""A new repository-less session's workspace: written from the image git made once in
this process, equal to what git makes of an empty directory, owned by the sandbox's user."""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.test import override_settings

from gitops import Git, GitError, GitErrorKind, HostRunner
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
def runner(monkeypatch) -> CountingRunner:
    counting = CountingRunner()
    monkeypatch.setattr(scratch, "host_git", lambda: Git(counting))
    return counting


@pytest.fixture
def root(tmp_path: Path, runner) -> Path:
    with override_settings(AGENT_WORKSPACE_ROOT=str(tmp_path), AGENT_SANDBOX="on"):
        yield tmp_path


def new_workspace(root: Path, name: str) -> Path:
    workspace = root / name
    workspace.mkdir()
    return workspace


def owners(directory: Path) -> set[tuple[int, int]]:
    paths = [directory / ".git", *(directory / ".git").rglob("*")]
    return {(p.lstat().st_uid, p.lstat().st_gid) for p in paths}


def test_new_workspaces_are_written_from_one_image_git_made_once(root, runner):
    expected = ws.check_out_saved(git, new_workspace(root, "by-git"), saved="", branch="main")
    starts = [scratch.first_checkout(new_workspace(root, f"s{n}"), "main") for n in range(3)]
    assert starts == [expected] * 3
    # One git start (the image's script) for three sessions; none of their own.
    assert [argv[0] for argv in runner.started] == ["sh"]
    for n in range(3):
        workspace = root / f"s{n}"
        assert ws.head(git, workspace) == expected
        assert git("status", "--porcelain", "--ignored", cwd=workspace) == ""
        assert git("symbolic-ref", "HEAD", cwd=workspace).strip() == "refs/heads/main"
    # Where git made it, nothing is left.
    assert sorted(p.name for p in root.iterdir()) == ["by-git", "s0", "s1", "s2"]


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root worker hands files to another user")
def test_a_root_workers_new_workspace_belongs_to_the_sandboxs_user(root):
    workspace = new_workspace(root, "s")
    scratch.first_checkout(workspace, "main")
    assert owners(workspace) == {sandboxing.sandbox_host_user()}


def test_a_workspace_root_that_cannot_take_the_image_fails_as_a_git_error(tmp_path, runner):
    missing = tmp_path / "missing"
    workspace = new_workspace(tmp_path, "s")
    with override_settings(AGENT_WORKSPACE_ROOT=str(missing)):
        with pytest.raises(GitError) as failed:
            scratch.first_checkout(workspace, "main")
    assert failed.value.kind is GitErrorKind.OTHER and "first commit" in str(failed.value)
    assert list(workspace.iterdir()) == [] and runner.started == []


def test_a_new_workspace_names_neither_the_workers_user_nor_its_host(root):
    workspace = new_workspace(root, "s")
    scratch.first_checkout(workspace, "main")
    files = [p for p in (workspace / ".git").rglob("*") if p.is_file()]
    logs = [p.read_bytes() for p in files if "logs" in p.parts]
    assert logs and all(b"Agentsite <agentsite@localhost>" in log for log in logs)
    names = {socket.gethostname().encode(), pwd.getpwuid(os.geteuid()).pw_name.encode() + b" <"}
    assert not [p for p in files for name in names if name in p.read_bytes()]
