"""The fake GitHub's repository, branch and pull-request routes over the repositories it
hosts, and the pull requests tests seed (same-repository and fork)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.conftest import FAKE_GITHUB_BOT, FAKE_GITHUB_TOKEN, GitClient
from tests.fakes.github_api import FakeGitHub

REPO = "octo/widgets"
PULLS = f"/repos/{REPO}/pulls"


@pytest.fixture
def github(fake_github: FakeGitHub) -> Iterator[httpx.Client]:
    headers = {"authorization": f"Bearer {FAKE_GITHUB_TOKEN}"}
    with httpx.Client(base_url=fake_github.base_url, headers=headers, timeout=20) as client:
        yield client


@pytest.fixture
def widgets(fake_github: FakeGitHub) -> FakeGitHub:
    """REPO with a `feature` branch one commit ahead of main."""
    fake_github.create_repository(REPO)
    fake_github.commit_files(REPO, "feature", {"feature.txt": "new\n"}, "Add the feature")
    return fake_github


def _open(github: httpx.Client, head: str = "feature", **fields: Any) -> httpx.Response:
    payload = {"title": "Add the feature", "head": head, "base": "main", "body": "Fixes #7"}
    return github.post(PULLS, json=payload | fields)


# --- repositories and branches -------------------------------------------------------------


def test_repository_route_answers_clone_url_and_default_branch(
    fake_github: FakeGitHub, github: httpx.Client
) -> None:
    fake_github.create_repository(REPO, default_branch="trunk", private=False)

    response = github.get(f"/repos/{REPO}")

    assert response.status_code == 200
    body = response.json()
    base = fake_github.base_url
    assert {k: body[k] for k in ("name", "full_name", "private", "default_branch", "fork")} == {
        "name": "widgets",
        "full_name": REPO,
        "private": False,
        "default_branch": "trunk",
        "fork": False,
    }
    assert (body["clone_url"], body["html_url"]) == (f"{base}/{REPO}.git", f"{base}/{REPO}")
    assert body["owner"]["login"] == "octo"
    assert isinstance(body["id"], int)


def test_repository_route_ignores_case_and_404s_unknown_repositories(
    fake_github: FakeGitHub, github: httpx.Client
) -> None:
    fake_github.create_repository(REPO)

    found = github.get("/repos/Octo/WIDGETS")
    missing = github.get("/repos/octo/gadgets")

    assert (found.status_code, found.json()["full_name"]) == (200, REPO)
    assert (missing.status_code, missing.json()["message"]) == (404, "Not Found")


def test_repository_route_needs_the_token(fake_github: FakeGitHub) -> None:
    fake_github.create_repository(REPO)

    response = httpx.get(f"{fake_github.base_url}/repos/{REPO}", timeout=20)

    assert response.status_code == 401


def test_branch_route_answers_the_tip_of_a_branch_with_slashes(
    fake_github: FakeGitHub, github: httpx.Client
) -> None:
    fake_github.create_repository(REPO)
    sha = fake_github.commit_files(REPO, "agentsite/42-fix", {"a": "a"}, "Fix")

    response = github.get(f"/repos/{REPO}/branches/agentsite/42-fix")
    missing = github.get(f"/repos/{REPO}/branches/agentsite/43-fix")

    assert response.status_code == 200
    assert (response.json()["name"], response.json()["commit"]["sha"]) == ("agentsite/42-fix", sha)
    assert (missing.status_code, missing.json()["message"]) == (404, "Branch not found")


# --- opening and reading pull requests -----------------------------------------------------


def test_create_pull_answers_201_with_head_and_base(
    widgets: FakeGitHub, github: httpx.Client
) -> None:
    response = _open(github, draft=True)

    assert response.status_code == 201
    pull = response.json()
    number, base = pull["number"], widgets.base_url
    assert (pull["state"], pull["draft"], pull["title"], pull["body"]) == (
        "open",
        True,
        "Add the feature",
        "Fixes #7",
    )
    assert pull["html_url"] == f"{base}/{REPO}/pull/{number}"
    assert pull["url"] == f"{base}/repos/{REPO}/pulls/{number}"
    assert (pull["head"]["ref"], pull["head"]["sha"]) == (
        "feature",
        widgets.branch_sha(REPO, "feature"),
    )
    assert (pull["head"]["repo"]["full_name"], pull["base"]["repo"]["full_name"]) == (REPO, REPO)
    assert pull["base"]["ref"] == "main"
    assert pull["user"]["login"] == FAKE_GITHUB_BOT
    assert widgets.pulls(REPO) == [pull]
    assert github.get(f"{PULLS}/{number}").json() == pull


def test_pull_list_filters_by_head_and_state(widgets: FakeGitHub, github: httpx.Client) -> None:
    widgets.commit_files(REPO, "other", {"other.txt": "x"}, "Other")
    feature = _open(github).json()
    other = _open(github, head="octo:other").json()

    by_head = github.get(PULLS, params={"head": "octo:feature", "state": "open"})
    everything = github.get(PULLS)
    closed = github.get(PULLS, params={"state": "closed"})

    assert [p["number"] for p in by_head.json()] == [feature["number"]]
    assert [p["number"] for p in everything.json()] == [other["number"], feature["number"]]
    assert closed.json() == []


def test_pull_reports_the_current_head_after_a_push(
    widgets: FakeGitHub, github: httpx.Client
) -> None:
    number = _open(github).json()["number"]

    sha = widgets.commit_files(REPO, "feature", {"more.txt": "more\n"}, "More")

    assert github.get(f"{PULLS}/{number}").json()["head"]["sha"] == sha


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"head": "missing"}, {"resource": "PullRequest", "field": "head", "code": "invalid"}),
        ({"head": "bob:feature"}, {"resource": "PullRequest", "field": "head", "code": "invalid"}),
        ({"base": "missing"}, {"resource": "PullRequest", "field": "base", "code": "invalid"}),
        ({"title": None}, {"resource": "PullRequest", "field": "title", "code": "missing_field"}),
        (
            {"head": "main"},
            {
                "resource": "PullRequest",
                "code": "custom",
                "message": "No commits between main and main",
            },
        ),
    ],
    ids=["missing-head", "unknown-fork", "missing-base", "no-title", "no-commits"],
)
def test_create_pull_with_bad_fields_answers_422(
    widgets: FakeGitHub, github: httpx.Client, fields: dict[str, Any], error: dict[str, str]
) -> None:
    response = _open(github, **fields)

    assert response.status_code == 422
    assert (response.json()["message"], response.json()["errors"]) == ("Validation Failed", [error])
    assert widgets.pulls(REPO) == []


def test_create_pull_twice_for_the_same_head_answers_422(
    widgets: FakeGitHub, github: httpx.Client
) -> None:
    first = _open(github)

    second = _open(github, head="octo:feature")

    assert (first.status_code, second.status_code) == (201, 422)
    (error,) = second.json()["errors"]
    assert error["message"] == "A pull request already exists for octo:feature."
    assert len(widgets.pulls(REPO)) == 1


def test_pull_routes_404_unknown_repositories_and_numbers(
    widgets: FakeGitHub, github: httpx.Client
) -> None:
    assert github.get(f"{PULLS}/10001").status_code == 404
    assert github.get("/repos/octo/gadgets/pulls").status_code == 404
    assert github.post("/repos/octo/gadgets/pulls", json={}).status_code == 404


def test_pull_numbers_start_above_fixture_issues_and_skip_numbers_in_use(
    widgets: FakeGitHub, github: httpx.Client
) -> None:
    seeded = widgets.add_pull_request(REPO, head_ref="seeded", number=12)
    first = _open(github).json()["number"]
    commented = github.post(f"/repos/{REPO}/issues/{first + 40}/comments", json={"body": "hi"})
    widgets.commit_files(REPO, "second", {"second.txt": "2"}, "Second")

    second = _open(github, head="second").json()["number"]

    assert (seeded["number"], first) == (12, 10_001)
    assert commented.status_code == 201
    assert second == first + 41
    with pytest.raises(ValueError, match="#12"):
        widgets.add_pull_request(REPO, head_ref="again", number=12)


# --- seeded pull requests, forks -----------------------------------------------------------


def test_seeded_fork_pull_reports_the_fork_as_head_repo(
    widgets: FakeGitHub, github: httpx.Client
) -> None:
    pull = widgets.add_pull_request(
        REPO, head_ref="patch-1", head_repo="alice/widgets", title="Alice's patch"
    )

    fetched = github.get(f"{PULLS}/{pull['number']}").json()
    fork = github.get("/repos/alice/widgets").json()

    assert fetched == pull
    assert (pull["head"]["repo"]["full_name"], pull["head"]["label"]) == (
        "alice/widgets",
        "alice:patch-1",
    )
    assert (pull["base"]["repo"]["full_name"], pull["user"]["login"]) == (REPO, "alice")
    assert (fork["fork"], fork["clone_url"]) == (True, f"{widgets.base_url}/alice/widgets.git")
    assert widgets.branch_sha(REPO, "patch-1") is None


def test_fork_head_is_fetchable_from_the_fork_and_as_pull_ref(
    widgets: FakeGitHub, git: GitClient, tmp_path: Path
) -> None:
    widgets.create_repository("alice/widgets")  # an existing head repo is used as it is
    sha = widgets.commit_files("alice/widgets", "patch-1", {"fix.txt": "fixed\n"}, "Alice's fix")
    number = widgets.add_pull_request(REPO, head_ref="patch-1", head_repo="alice/widgets")["number"]
    workdir = tmp_path / "clone"
    git.ok("clone", "--quiet", f"{widgets.base_url}/{REPO}.git", str(workdir))

    git.ok("fetch", "--quiet", f"{widgets.base_url}/alice/widgets.git", "patch-1", cwd=workdir)
    from_fork = git.ok("rev-parse", "FETCH_HEAD", cwd=workdir)
    git.ok("fetch", "--quiet", "origin", f"pull/{number}/head", cwd=workdir)
    from_pull_ref = git.ok("rev-parse", "FETCH_HEAD", cwd=workdir)

    assert from_fork == from_pull_ref == sha


def test_create_pull_from_a_fork_branch(widgets: FakeGitHub, github: httpx.Client) -> None:
    widgets.add_pull_request(REPO, head_ref="seed", head_repo="alice/widgets")
    widgets.commit_files("alice/widgets", "patch-2", {"p.txt": "p"}, "Patch two")

    response = _open(github, head="alice:patch-2")

    assert response.status_code == 201
    assert response.json()["head"]["repo"]["full_name"] == "alice/widgets"
    listed = github.get(PULLS, params={"head": "alice:patch-2"}).json()
    assert [p["number"] for p in listed] == [response.json()["number"]]
