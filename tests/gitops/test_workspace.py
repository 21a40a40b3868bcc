"""gitops with real git on local repositories: a "remote" (bare), a mirror, workspaces."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from gitops import Git, GitAuth, GitError, GitErrorKind, GitUser
from gitops import mirror as mirrors
from gitops import workspace as ws
from gitops.command import classify, git_env
from tests.gitops.repos import AGENT, commit_in

git = Git()


def checkout(tmp_path: Path, mirror: Path, name: str, branch: str = "agentsite/1-fix") -> Path:
    workspace = tmp_path / name
    workspace.mkdir(exist_ok=True)
    found = mirrors.refs(git, mirror)
    start = found.get(f"refs/heads/{branch}") or found["refs/heads/main"]
    ws.check_out(git, workspace, objects=mirror / "objects", branch=branch, start=start)
    return workspace


def test_a_workspace_borrows_the_mirror_objects_instead_of_copying_them(tmp_path, mirror):
    workspace = checkout(tmp_path, mirror, "one")
    assert (workspace / "src" / "app.py").read_text() == "print('v1')\n"
    alternates = (workspace / ".git" / "objects" / "info" / "alternates").read_text()
    assert alternates.strip() == str(mirror / "objects")
    assert git("count-objects", cwd=workspace).startswith("0 objects")


def test_reset_drops_what_a_killed_attempt_left_half_written(tmp_path, mirror):
    workspace = checkout(tmp_path, mirror, "one")
    (workspace / "README.md").write_text("half writ")
    (workspace / "junk.tmp").write_text("x")
    (workspace / "build").mkdir()
    start = ws.head(git, workspace)
    ws.reset_to(git, workspace, "agentsite/1-fix", start)
    assert (workspace / "README.md").read_text() == "hello\n"
    assert not (workspace / "junk.tmp").exists() and not (workspace / "build").exists()


def test_a_directory_without_a_repository_is_cleared_and_made_one(tmp_path, mirror):
    workspace = tmp_path / "junk"
    workspace.mkdir()
    (workspace / "stray.txt").write_text("left over")
    (workspace / ".hidden").mkdir()
    ws.check_out_saved(git, workspace, saved="", branch="main")
    assert sorted(p.name for p in workspace.iterdir()) == [".git"]


def test_a_new_sessions_repository_holds_every_object_its_first_commit_names(tmp_path):
    """The empty first commit's tree is stored, not only known to git: `git fsck`,
    which an agent may well run, finds nothing missing, here and in a written image."""
    made, written = tmp_path / "made", tmp_path / "written"
    made.mkdir(), written.mkdir()
    start = ws.check_out_saved(git, made, saved="", branch="main")
    ws.RepositoryImage.read(made).write(written, None)
    for workspace in (made, written):
        assert git("rev-parse", f"{start}^{{tree}}", cwd=workspace).strip() == ws.EMPTY_TREE
        git("fsck", "--strict", "--no-dangling", cwd=workspace)
    # The commit itself is the same on every machine (a saved session names it).
    assert start == "51fc36a9f4554613c166dad31a4a80127210c994"


def test_a_written_image_is_the_repository_check_out_saved_makes_and_belongs_to_its_owner(
    tmp_path,
):
    made, written = tmp_path / "made", tmp_path / "written"
    made.mkdir(), written.mkdir()
    start = ws.check_out_saved(git, made, saved="", branch="main")
    image = ws.RepositoryImage.read(made)
    # Only root can give files away (as a root worker does, to the sandbox's user).
    owner = GitUser(54321, 54322) if os.geteuid() == 0 else None
    image.write(written, owner)
    expected = (owner.uid, owner.gid) if owner else (os.geteuid(), os.getegid())
    paths = [written / ".git", *(written / ".git").rglob("*")]
    assert {(p.lstat().st_uid, p.lstat().st_gid) for p in paths} == {expected}
    assert sorted(p.relative_to(written) for p in paths) == sorted(
        p.relative_to(made) for p in [made / ".git", *(made / ".git").rglob("*")]
    )
    assert ws.head(git, written) == start
    assert git("symbolic-ref", "HEAD", cwd=written).strip() == "refs/heads/main"
    assert git("status", "--porcelain", "--ignored", cwd=written) == ""
    commit_in(written, {"notes.txt": "mine\n"}, "the agent's")
    assert ws.head(git, made) == start


@pytest.mark.parametrize(
    ("error", "kind"), [(errno.ENOSPC, GitErrorKind.DISK_FULL), (errno.EPERM, GitErrorKind.OTHER)]
)
def test_an_image_that_fails_half_written_leaves_no_half_repository(
    tmp_path, monkeypatch, error, kind
):
    made = tmp_path / "made"
    made.mkdir()
    ws.check_out_saved(git, made, saved="", branch="main")
    image = ws.RepositoryImage.read(made)
    workspace = tmp_path / "s"
    workspace.mkdir()
    written: list[int] = []

    def write_some(fd: int, data: bytes) -> int:
        if len(written) == 3:  # the fourth file: the disk is full, or refused
            raise OSError(error, os.strerror(error))
        written.append(fd)
        return (
            os.write.__wrapped__(fd, data) if hasattr(os.write, "__wrapped__") else real(fd, data)
        )

    real = os.write
    monkeypatch.setattr(os, "write", write_some)
    with pytest.raises(GitError) as failed:
        image.write(workspace, None)
    monkeypatch.undo()
    assert failed.value.kind is kind and len(written) == 3
    assert list(workspace.iterdir()) == []


def test_an_image_is_never_written_over_a_repository_already_there(tmp_path):
    made = tmp_path / "made"
    made.mkdir()
    ws.check_out_saved(git, made, saved="", branch="main")
    workspace = tmp_path / "s"
    (workspace / ".git").mkdir(parents=True)
    (workspace / ".git" / "mine").write_text("someone's")
    with pytest.raises(GitError) as failed:
        ws.RepositoryImage.read(made).write(workspace, None)
    assert failed.value.kind is GitErrorKind.OTHER
    assert [p.name for p in (workspace / ".git").iterdir()] == ["mine"]


def test_commit_all_keeps_the_agents_own_commits_and_adds_one_with_trailers(tmp_path, mirror):
    workspace = checkout(tmp_path, mirror, "one")
    start = ws.head(git, workspace)
    commit_in(workspace, {"own.txt": "by the agent\n"}, "agent's own commit")
    (workspace / "left.txt").write_text("uncommitted\n")
    trailers = ["Agentsite-Task: https://agents.example.com/tasks/7/",
                "Co-authored-by: Alice <alice@example.com>"]  # fmt: skip
    head = ws.commit_all(git, workspace, message="Fix it\n\nDone.", author=AGENT, trailers=trailers)
    log = git("log", "--format=%an <%ae>|%s", f"{start}..{head}", cwd=workspace).splitlines()
    assert log == [
        "Agentsite <agentsite@example.com>|Fix it",
        "Someone <someone@example.com>|agent's own commit",
    ]
    body = git("log", "-1", "--format=%B", head, cwd=workspace)
    assert body.rstrip().endswith("\n\n" + "\n".join(trailers))


def test_commit_all_without_changes_adds_nothing(tmp_path, mirror):
    workspace = checkout(tmp_path, mirror, "one")
    start = ws.head(git, workspace)
    assert ws.commit_all(git, workspace, message="nothing", author=AGENT) == start


def test_changes_count_lines_renames_binaries_and_cap_the_diff(tmp_path, mirror):
    workspace = checkout(tmp_path, mirror, "one")
    start = ws.head(git, workspace)
    (workspace / "src" / "app.py").write_text("print('v2')\nprint('more')\n")
    git("mv", "README.md", "READ.md", cwd=workspace)
    (workspace / "logo.bin").write_bytes(bytes(range(256)))
    end = ws.commit_all(git, workspace, message="change", author=AGENT)
    found = ws.changes(git, workspace, start=start, end=end, max_diff_bytes=100_000)
    by_path = {f.path: (f.insertions, f.deletions) for f in found.files}
    assert by_path == {"READ.md": (0, 0), "logo.bin": (None, None), "src/app.py": (2, 1)}
    assert (found.insertions, found.deletions) == (2, 1)
    assert "+print('more')" in found.diff and not found.truncated
    assert found.commits == [(end, "change")]
    small = ws.changes(git, workspace, start=start, end=end, max_diff_bytes=40)
    assert small.truncated and len(small.diff.encode()) <= 40


def test_a_bundle_carries_new_commits_into_the_mirror_and_on_to_the_remote(
    tmp_path, mirror, remote
):
    workspace = checkout(tmp_path, mirror, "one")
    start = ws.head(git, workspace)
    end = commit_in(workspace, {"new.txt": "new\n"}, "add new", AGENT)
    out = tmp_path / "out.bundle"
    assert ws.bundle(git, workspace, out, ref="refs/heads/agentsite/1-fix", since=start)
    sha = mirrors.import_bundle(git, mirror, out, "refs/heads/agentsite/1-fix", "refs/agentsite/t1")
    assert sha == end
    mirrors.push(git, mirror, str(remote), None, sha, "agentsite/1-fix")
    assert git("rev-parse", "agentsite/1-fix", cwd=remote).strip() == end
    assert not ws.bundle(git, workspace, tmp_path / "none.bundle", ref="HEAD", since=end)


def publish(git_dir: Path, workspace: Path, branch: str, since: str, tmp_path: Path) -> str:
    """Carry a workspace's branch into the mirror through a bundle, as the worker does."""
    out = tmp_path / f"{branch.replace('/', '-')}.bundle"
    assert ws.bundle(git, workspace, out, ref=f"refs/heads/{branch}", since=since)
    return mirrors.import_bundle(git, git_dir, out, f"refs/heads/{branch}", "refs/agentsite/out")


def test_a_push_after_someone_else_pushed_is_rejected_then_rebased(tmp_path, mirror, remote):
    workspace = checkout(tmp_path, mirror, "one", branch="main")
    start = ws.head(git, workspace)
    someone = tmp_path / "someone"
    git("clone", "-q", str(remote), str(someone), cwd=tmp_path)
    theirs = commit_in(someone, {"theirs.txt": "theirs\n"}, "someone else's")
    git("push", "-q", "origin", "HEAD:main", cwd=someone)
    commit_in(workspace, {"mine.txt": "mine\n"}, "mine", AGENT)
    mine = publish(mirror, workspace, "main", start, tmp_path)
    with pytest.raises(GitError) as rejected:
        mirrors.push(git, mirror, str(remote), None, mine, "main")
    assert rejected.value.kind is GitErrorKind.REJECTED
    with mirrors.locked(mirror):
        mirrors.refresh(git, mirror, str(remote), None, {"refs/heads/*": "refs/heads/*"})
    ws.fetch(git, workspace, str(mirror), {"refs/heads/main": "refs/remotes/origin/main"})
    assert ws.rebase_onto(git, workspace, theirs, AGENT)
    rebased = publish(mirror, workspace, "main", theirs, tmp_path)
    mirrors.push(git, mirror, str(remote), None, rebased, "main")
    log = git("log", "--format=%s", "main", cwd=remote).splitlines()
    assert log[:3] == ["mine", "someone else's", "initial"]


def test_a_conflicting_rebase_is_abandoned_cleanly(tmp_path, mirror):
    workspace = checkout(tmp_path, mirror, "one")
    start = ws.head(git, workspace)
    theirs = commit_in(workspace, {"README.md": "theirs\n"}, "theirs")
    ws.reset_to(git, workspace, "agentsite/1-fix", start)
    mine = commit_in(workspace, {"README.md": "mine\n"}, "mine", AGENT)
    assert not ws.rebase_onto(git, workspace, theirs, AGENT)
    assert ws.head(git, workspace) == mine and (workspace / "README.md").read_text() == "mine\n"


def test_concurrent_refreshes_of_one_mirror_take_turns(tmp_path, mirror, remote):
    errors: list[BaseException] = []

    def refresh() -> None:
        try:
            for _ in range(5):
                with mirrors.locked(mirror):
                    mirrors.refresh(
                        git, mirror, str(remote), None, {"refs/heads/*": "refs/heads/*"}
                    )
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=refresh) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    git("fsck", "--strict", cwd=mirror)


def test_a_token_goes_only_into_the_git_process_environment_scoped_to_its_host():
    auth = GitAuth("https://github.example.com/o/r.git", "ghp_secret")
    env = git_env(auth.config())
    keys = [env[k] for k in env if k.startswith("GIT_CONFIG_KEY_")]
    assert "http.https://github.example.com/.extraHeader" in keys
    assert "ghp_secret" not in " ".join(keys)


@pytest.mark.parametrize(
    ("stderr", "kind"),
    [
        ("fatal: unable to access 'x': The requested URL returned error: 401", GitErrorKind.AUTH),
        ("remote: Repository not found.\nfatal: repository 'x' not found", GitErrorKind.NOT_FOUND),
        ("fatal: unable to access 'x': Failed to connect to h port 1: Connection refused",
         GitErrorKind.NETWORK),
        ("fatal: unable to access 'x': The requested URL returned error: 502",
         GitErrorKind.NETWORK),
        (" ! [rejected]  main -> main (fetch first)", GitErrorKind.REJECTED),
        ("error: could not write to file: No space left on device", GitErrorKind.DISK_FULL),
        ("fatal: couldn't find remote ref refs/heads/nope", GitErrorKind.NOT_FOUND),
        ("something else", GitErrorKind.OTHER),
    ],
)  # fmt: skip
def test_git_messages_are_classified(stderr, kind):
    assert classify(stderr) is kind
