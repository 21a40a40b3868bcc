"""The fake GitHub hosting real repositories: clone, fetch and push with real git over smart
HTTP with a token, scripted commits by someone else, and the same through the control API
of the fake running as its own process."""

from __future__ import annotations

import dataclasses
import secrets
import signal
from pathlib import Path

import httpx
import pytest

from tests.fakes.conftest import (
    FAKE_GITHUB_BOT,
    FAKE_GITHUB_TOKEN,
    GitClient,
    basic_auth,
    fake_process,
)
from tests.fakes.github_api import FakeGitHub, FakeGitHubControl, UnknownRepository
from tests.fakes.http_base import ControlError

REPO = "octo/widgets"
FILES = {"README.md": "# Widgets\n", "src/widgets.py": "WIDGETS = []\n"}


def _url(fake: FakeGitHub | FakeGitHubControl, repo: str = REPO) -> str:
    return f"{fake.base_url}/{repo}.git"


def _clone(git: GitClient, fake: FakeGitHub | FakeGitHubControl, into: Path) -> Path:
    git.ok("clone", "--quiet", _url(fake), str(into))
    return into


def _commit(git: GitClient, workdir: Path, files: dict[str, str], message: str) -> str:
    for path, text in files.items():
        (workdir / path).parent.mkdir(parents=True, exist_ok=True)
        (workdir / path).write_text(text)
    git.ok("add", "--all", cwd=workdir)
    git.ok("commit", "--quiet", "--message", message, cwd=workdir)
    return git.ok("rev-parse", "HEAD", cwd=workdir)


# --- authentication ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [basic_auth(FAKE_GITHUB_TOKEN), f"Bearer {FAKE_GITHUB_TOKEN}", f"token {FAKE_GITHUB_TOKEN}"],
    ids=["basic", "bearer", "token"],
)
def test_clone_with_token_checks_out_the_default_branch(
    fake_github: FakeGitHub, git: GitClient, tmp_path: Path, authorization: str
) -> None:
    fake_github.create_repository(REPO, files=FILES)
    git = dataclasses.replace(git, authorization=authorization)

    workdir = _clone(git, fake_github, tmp_path / "clone")

    assert (workdir / "src/widgets.py").read_text() == FILES["src/widgets.py"]
    assert git.ok("rev-parse", "HEAD", cwd=workdir) == fake_github.branch_sha(REPO, "main")
    recorded = fake_github.requests()
    assert {r.status for r in recorded} == {200}
    assert {r.headers["authorization"] for r in recorded} == {authorization}
    assert all(FAKE_GITHUB_TOKEN not in r.path + r.query for r in recorded)
    assert all(r.path.startswith(f"/{REPO}.git/") for r in recorded)


@pytest.mark.parametrize("authorization", [None, basic_auth("wrong-token")], ids=["none", "wrong"])
def test_clone_without_the_token_fails_with_401_and_no_prompt(
    fake_github: FakeGitHub, git: GitClient, tmp_path: Path, authorization: str | None
) -> None:
    fake_github.create_repository(REPO)
    git = dataclasses.replace(git, authorization=authorization)

    result = git.run("clone", _url(fake_github), str(tmp_path / "clone"))

    assert result.returncode != 0
    assert "terminal prompts disabled" in result.stderr
    assert [(r.path, r.status) for r in fake_github.requests()] == [(f"/{REPO}.git/info/refs", 401)]


def test_git_401_asks_for_basic_credentials(fake_github: FakeGitHub) -> None:
    fake_github.create_repository(REPO)

    response = httpx.get(f"{_url(fake_github)}/info/refs?service=git-upload-pack", timeout=20)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Basic realm="GitHub"'
    assert "x-ratelimit-remaining" not in response.headers


def test_clone_of_unknown_repository_answers_404(
    fake_github: FakeGitHub, git: GitClient, tmp_path: Path
) -> None:
    result = git.run("clone", _url(fake_github, "octo/missing"), str(tmp_path / "clone"))

    assert result.returncode != 0
    assert [r.status for r in fake_github.requests()] == [404]


# --- pushing and fetching ------------------------------------------------------------------


def test_push_of_a_new_branch_is_seen_by_branch_sha(
    fake_github: FakeGitHub, git: GitClient, tmp_path: Path
) -> None:
    fake_github.create_repository(REPO, files=FILES)
    workdir = _clone(git, fake_github, tmp_path / "clone")
    git.ok("switch", "--quiet", "--create", "agentsite/42-fix", cwd=workdir)
    sha = _commit(git, workdir, {"src/widgets.py": "WIDGETS = [1]\n"}, "Fix widgets")

    git.ok("push", "--quiet", "origin", "agentsite/42-fix", cwd=workdir)

    assert fake_github.branch_sha(REPO, "agentsite/42-fix") == sha
    assert fake_github.log(REPO, "agentsite/42-fix") == ["Fix widgets", "Initial commit"]
    assert fake_github.read_file(REPO, "agentsite/42-fix", "src/widgets.py") == "WIDGETS = [1]\n"
    assert fake_github.read_file(REPO, "main", "src/widgets.py") == FILES["src/widgets.py"]
    push = fake_github.requests("POST", f"/{REPO}.git/git-receive-pack")
    assert [r.status for r in push] == [200]


def test_non_fast_forward_push_is_rejected_and_the_branch_keeps_its_tip(
    fake_github: FakeGitHub, git: GitClient, tmp_path: Path
) -> None:
    fake_github.create_repository(REPO, files=FILES)
    workdir = _clone(git, fake_github, tmp_path / "clone")
    theirs = fake_github.commit_files(REPO, "main", {"NOTES": "theirs\n"}, "Their change")
    _commit(git, workdir, {"NOTES": "ours\n"}, "Our change")

    result = git.run("push", "origin", "main", cwd=workdir)

    assert result.returncode != 0
    assert "[rejected]" in result.stderr
    assert fake_github.branch_sha(REPO, "main") == theirs


def test_commit_files_then_fetch_sees_the_new_commit(
    fake_github: FakeGitHub, git: GitClient, tmp_path: Path
) -> None:
    fake_github.create_repository(REPO, files=FILES)
    workdir = _clone(git, fake_github, tmp_path / "clone")

    sha = fake_github.commit_files(
        REPO,
        "main",
        {"docs/guide.md": "Read me\n"},
        "Add a guide",
        author="Mona <mona@example.com>",
    )
    git.ok("fetch", "--quiet", "origin", cwd=workdir)

    assert git.ok("rev-parse", "origin/main", cwd=workdir) == sha
    assert git.ok("show", "origin/main:docs/guide.md", cwd=workdir) == "Read me"
    assert git.ok("log", "-1", "--format=%an <%ae>|%s", "origin/main", cwd=workdir) == (
        "Mona <mona@example.com>|Add a guide"
    )


def test_commit_files_creates_a_missing_branch_from_default_and_can_delete(
    fake_github: FakeGitHub,
) -> None:
    fake_github.create_repository(REPO, default_branch="trunk", files=FILES)

    sha = fake_github.commit_files(REPO, "feature", {"README.md": None, "new.txt": "x"}, "Swap")

    assert fake_github.branch_sha(REPO, "feature") == sha
    assert fake_github.log(REPO, "feature") == ["Swap", "Initial commit"]
    assert fake_github.read_file(REPO, "feature", "README.md") is None
    assert fake_github.read_file(REPO, "trunk", "README.md") == FILES["README.md"]
    assert (fake_github.branch_sha(REPO, "main"), fake_github.log(REPO, "main")) == (None, [])


def test_scripted_fault_fails_one_push_then_the_retry_lands(
    fake_github: FakeGitHub, git: GitClient, tmp_path: Path
) -> None:
    fake_github.create_repository(REPO)
    workdir = _clone(git, fake_github, tmp_path / "clone")
    sha = _commit(git, workdir, {"a.txt": "a\n"}, "A change")
    fake_github.fail("POST", f"/{REPO}.git/git-receive-pack", status=500)

    failed = git.run("push", "origin", "main", cwd=workdir)
    retried = git.run("push", "origin", "main", cwd=workdir)

    assert (failed.returncode != 0, retried.returncode) == (True, 0)
    assert fake_github.branch_sha(REPO, "main") == sha


def test_large_fetch_of_2000_files_works(
    fake_github: FakeGitHub, git: GitClient, tmp_path: Path
) -> None:
    files = {f"pkg{n % 20}/module_{n}.py": f"VALUE = {n}\n" * 20 for n in range(2000)}
    fake_github.create_repository(REPO, files=files)

    workdir = _clone(git, fake_github, tmp_path / "clone")

    assert len(git.ok("ls-files", cwd=workdir).splitlines()) == 2000
    assert (workdir / "pkg7/module_1987.py").read_text() == files["pkg7/module_1987.py"]


def test_large_fetch_negotiation_arrives_gzipped(
    fake_github: FakeGitHub, git: GitClient, tmp_path: Path
) -> None:
    fake_github.create_repository(REPO)
    tips = {fake_github.commit_files(REPO, f"b{n}", {"n": str(n)}, f"n={n}") for n in range(30)}

    workdir = _clone(git, fake_github, tmp_path / "clone")

    remote = git.ok("for-each-ref", "--format=%(objectname)", "refs/remotes/origin/", cwd=workdir)
    assert tips <= set(remote.splitlines())
    fetches = fake_github.requests("POST", f"/{REPO}.git/git-upload-pack")
    assert "gzip" in {r.headers.get("content-encoding") for r in fetches}
    assert {r.status for r in fetches} == {200}


def test_large_push_arrives_chunked(
    fake_github: FakeGitHub, git: GitClient, tmp_path: Path
) -> None:
    fake_github.create_repository(REPO)
    # git sends bodies above http.postBuffer (64 KiB at least) with chunked encoding.
    git = dataclasses.replace(git, config={"http.postBuffer": "65536"})
    workdir = _clone(git, fake_github, tmp_path / "clone")
    sha = _commit(git, workdir, {"blob.txt": secrets.token_hex(200_000)}, "Big")

    git.ok("push", "--quiet", "origin", "HEAD:big", cwd=workdir)

    assert fake_github.branch_sha(REPO, "big") == sha
    pushes = fake_github.requests("POST", f"/{REPO}.git/git-receive-pack")
    assert "chunked" in {r.headers.get("transfer-encoding") for r in pushes}


# --- lifecycle -----------------------------------------------------------------------------


def test_close_removes_its_own_repos_root_but_keeps_a_given_one(tmp_path: Path) -> None:
    given_root = tmp_path / "repos"
    with FakeGitHub() as own, FakeGitHub(repos_root=given_root) as given:
        own.create_repository(REPO)
        given.create_repository(REPO)
        own_path, given_path = own.repo_path(REPO), given.repo_path(REPO)

    assert not own_path.exists()
    assert given_path == given_root.resolve() / "octo" / "widgets.git"
    assert (given_path / "HEAD").is_file()


def test_reset_deletes_repositories_and_pull_requests(fake_github: FakeGitHub) -> None:
    fake_github.create_repository(REPO)
    fake_github.add_pull_request(REPO, head_ref="feature")

    fake_github.reset()

    with pytest.raises(UnknownRepository):
        fake_github.repo_path(REPO)
    fake_github.create_repository(REPO)
    assert fake_github.pulls(REPO) == []


def test_create_repository_twice_raises(fake_github: FakeGitHub) -> None:
    fake_github.create_repository(REPO)

    with pytest.raises(ValueError, match="already exists"):
        fake_github.create_repository("Octo/Widgets")


# --- the control API, in-process and as a process ------------------------------------------


def test_control_api_rejects_bad_repository_input(fake_github: FakeGitHub) -> None:
    control = FakeGitHubControl(fake_github.base_url)

    with pytest.raises(ControlError, match="answered 400"):
        control.create_repository("not a name")
    with pytest.raises(ControlError, match="answered 404"):
        control.branch_sha("octo/missing", "main")
    with httpx.Client(base_url=fake_github.base_url, timeout=20) as client:
        bad_files = client.post(
            "/_fake/repos/commits",
            json={"full_name": REPO, "branch": "x", "files": {"a": 1}, "message": "m"},
        )

    assert bad_files.status_code == 400


@pytest.mark.integration
def test_process_mode_hosts_repositories_through_the_control_api(
    tmp_path: Path, git: GitClient
) -> None:
    args = ("--token", FAKE_GITHUB_TOKEN, "--bot-login", FAKE_GITHUB_BOT)
    with fake_process("tests.fakes.github_api", *args, "--repos-root", str(tmp_path)) as process:
        control = FakeGitHubControl(process.base_url)
        control.create_repository(REPO, files=FILES)
        theirs = control.commit_files(REPO, "main", {"NOTES": "hi\n"}, "Their note")
        workdir = _clone(git, control, tmp_path / "clone")
        git.ok("switch", "--quiet", "--create", "feature", cwd=workdir)
        ours = _commit(git, workdir, {"NOTES": "bye\n"}, "Our note")
        git.ok("push", "--quiet", "origin", "feature", cwd=workdir)
        pull = control.add_pull_request(REPO, head_ref="feature", title="Notes")
        fork_pull = control.add_pull_request(REPO, head_ref="patch-1", head_repo="alice/widgets")

        assert git.ok("rev-parse", "origin/main", cwd=workdir) == theirs
        assert control.branch_sha(REPO, "feature") == ours
        assert control.branch_sha(REPO, "nope") is None
        assert control.log(REPO, "feature") == ["Our note", "Their note", "Initial commit"]
        assert control.read_file(REPO, "feature", "NOTES") == "bye\n"
        assert control.repo_path(REPO) == tmp_path.resolve() / "octo" / "widgets.git"
        assert (pull["head"]["sha"], fork_pull["head"]["repo"]["full_name"]) == (
            ours,
            "alice/widgets",
        )
        assert [p["number"] for p in control.pulls(REPO)] == [pull["number"], fork_pull["number"]]
        assert {r.status for r in control.requests(path_prefix=f"/{REPO}.git/")} == {200}
        control.reset()
        with pytest.raises(ControlError, match="answered 404"):
            control.repo_path(REPO)
        process.popen.send_signal(signal.SIGTERM)
        assert process.popen.wait(20) == 0
