"""Real repositories for the gitops tests: a bare "remote" standing in for GitHub and this
machine's mirror of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitops import Author, Git
from gitops import mirror as mirrors
from gitops import workspace as ws

git = Git()
AGENT = Author("Agentsite", "agentsite@example.com")
SOMEONE = Author("Someone", "someone@example.com")


def commit_in(repo: Path, files: dict[str, str], message: str, author: Author = SOMEONE) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    head = ws.commit_all(git, repo, message=message, author=author)
    assert head is not None
    return head


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A bare repository with `main` (two files) standing in for GitHub."""
    bare = tmp_path / "remote.git"
    bare.mkdir()
    git("init", "-q", "--bare", ".", cwd=bare)
    seed = tmp_path / "seed"
    seed.mkdir()
    git("init", "-q", ".", cwd=seed)
    commit_in(seed, {"README.md": "hello\n", "src/app.py": "print('v1')\n"}, "initial")
    git("push", "-q", str(bare), "HEAD:refs/heads/main", cwd=seed)
    return bare


@pytest.fixture
def mirror(tmp_path: Path, remote: Path) -> Path:
    path = tmp_path / "mirrors" / "o-r.git"
    with mirrors.locked(path):
        mirrors.ensure(git, path)
        mirrors.refresh(git, path, str(remote), None, {"refs/heads/*": "refs/heads/*"})
    return path
