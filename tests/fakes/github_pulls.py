"""Repositories, branches and pull requests in the fake GitHub's REST API, over the git
repositories it hosts (git_repos.GitRepositories)."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.fakes.git_repos import GitRepositories, RepositoryInfo
from tests.fakes.github_state import ApiError, ApiReply, Route, now_iso, repo_route, user_json

# Issues and pull requests share one number sequence per repository. Webhook fixtures name
# issues up to about 2,100, so numbers the fake hands out start well above them and above any
# number the repository's comments use.
FIRST_PULL_NUMBER = 10_001
PULL_STATES = ("open", "closed", "all")


@dataclass
class PullRequest:
    """`head_sha` is the head's tip when the PR was opened; answers give the current tip."""

    id: int
    number: int
    repo: str
    title: str
    body: str | None
    draft: bool
    head_repo: str
    head_ref: str
    head_sha: str
    base_ref: str
    user: str
    created_at: str
    state: str = "open"


def validation_failed(**error: str) -> ApiError:
    """GitHub's 422: {"message": "Validation Failed", "errors": [{"resource", ...}]}."""
    return ApiError(422, "Validation Failed", errors=[{"resource": "PullRequest", **error}])


class PullRequests:
    """Pull requests by (repository, number), and the REST routes for repositories, branches
    and pulls. Not thread-safe: FakeGitHub holds its lock around every call."""

    def __init__(
        self,
        repos: GitRepositories,
        *,
        bot_login: str,
        next_id: Callable[[], int],
        issue_numbers: Callable[[str], set[int]],
    ) -> None:
        self.repos = repos
        self.api_url = ""
        self._bot_login = bot_login
        self._next_id = next_id
        self._issue_numbers = issue_numbers
        self._pulls: dict[tuple[str, int], PullRequest] = {}
        # Kept across clear(), like comment ids: a number never comes back for a repository.
        self._last_number: dict[str, int] = {}

    def routes(self) -> list[Route]:
        return [
            ("GET", repo_route(""), self._get_repository),
            ("GET", repo_route(r"/branches/(?P<branch>.+)"), self._get_branch),
            ("POST", repo_route(r"/pulls"), self._create),
            ("GET", repo_route(r"/pulls"), self._list),
            ("GET", repo_route(r"/pulls/(?P<number>\d+)"), self._get),
        ]

    # --- scripting and inspection ---------------------------------------------------------

    def add(
        self,
        repo: str,
        *,
        head_ref: str,
        base: str,
        head_repo: str | None,
        title: str,
        body: str | None,
        draft: bool,
        user: str | None,
        number: int | None,
    ) -> PullRequest:
        """A PR as someone opened it; a `head_repo` that is missing is made a fork of `repo`
        and a missing head branch starts at `base`."""
        base_info = self.repos.require(repo)
        if self.repos.branch_sha(base_info.full_name, base) is None:
            raise ValueError(f"{repo} has no branch {base!r}")
        if number is not None and (number < 1 or self._find(base_info.full_name, number)):
            raise ValueError(f"{repo} already has pull request #{number}, or it is not a number")
        head_info = base_info
        if head_repo is not None and head_repo.lower() != base_info.full_name.lower():
            found = self.repos.find(head_repo)
            head_info = found or self.repos.fork(base_info.full_name, head_repo)
        sha = self.repos.branch_sha(head_info.full_name, head_ref)
        if sha is None:
            sha = self.repos.create_branch(head_info.full_name, head_ref, base)
        login = user or head_info.owner
        return self._open(
            base_info, head_info, head_ref, sha, base, title, body, draft, login, number
        )

    def in_repo(self, repo: str) -> list[PullRequest]:
        return sorted(
            (p for (key, _), p in self._pulls.items() if key == repo.lower()),
            key=lambda p: p.number,
        )

    def clear(self) -> None:
        self._pulls.clear()

    # --- JSON -----------------------------------------------------------------------------

    def repository_json(self, info: RepositoryInfo) -> dict[str, Any]:
        repo_id = zlib.crc32(info.full_name.lower().encode()) & 0x7FFFFFFF
        return {
            "id": repo_id,
            "node_id": f"R_fake{repo_id}",
            "name": info.name,
            "full_name": info.full_name,
            "private": info.private,
            "visibility": "private" if info.private else "public",
            "fork": info.fork_of is not None,
            "default_branch": info.default_branch,
            "owner": user_json(info.owner),
            "url": f"{self.api_url}/repos/{info.full_name}",
            "html_url": f"{self.api_url}/{info.full_name}",
            "clone_url": f"{self.api_url}/{info.full_name}.git",
        }

    def pull_json(self, pull: PullRequest) -> dict[str, Any]:
        base_info = self.repos.find(pull.repo)
        head_info = self.repos.find(pull.head_repo)
        head_sha = head_info and self.repos.branch_sha(head_info.full_name, pull.head_ref)
        base_sha = base_info and self.repos.branch_sha(base_info.full_name, pull.base_ref)
        repo_api = f"{self.api_url}/repos/{pull.repo}"
        return {
            "id": pull.id,
            "node_id": f"PR_fake{pull.id}",
            "number": pull.number,
            "state": pull.state,
            "draft": pull.draft,
            "title": pull.title,
            "body": pull.body,
            "user": user_json(pull.user),
            "created_at": pull.created_at,
            "updated_at": pull.created_at,
            "url": f"{repo_api}/pulls/{pull.number}",
            "html_url": f"{self.api_url}/{pull.repo}/pull/{pull.number}",
            "issue_url": f"{repo_api}/issues/{pull.number}",
            "head": self._end_json(pull.head_repo, pull.head_ref, head_sha or pull.head_sha),
            "base": self._end_json(pull.repo, pull.base_ref, base_sha),
        }

    def _end_json(self, full_name: str, ref: str, sha: str | None) -> dict[str, Any]:
        info = self.repos.find(full_name)
        owner = full_name.partition("/")[0]
        return {
            "label": f"{owner}:{ref}",
            "ref": ref,
            "sha": sha,
            "user": user_json(owner),
            # GitHub says null when the head repository is gone (a deleted fork).
            "repo": None if info is None else self.repository_json(info),
        }

    # --- the REST API ---------------------------------------------------------------------

    def _get_repository(self, repo: str, _params: dict[str, str], _body: Any) -> ApiReply:
        return ApiReply(200, self.repository_json(self._repository(repo)))

    def _get_branch(self, repo: str, params: dict[str, str], _body: Any) -> ApiReply:
        info = self._repository(repo)
        sha = self.repos.branch_sha(info.full_name, params["branch"])
        if sha is None:
            raise ApiError(404, "Branch not found")
        commit = {"sha": sha, "url": f"{self.api_url}/repos/{info.full_name}/commits/{sha}"}
        return ApiReply(200, {"name": params["branch"], "commit": commit, "protected": False})

    def _create(self, repo: str, _params: dict[str, str], body: Any) -> ApiReply:
        base_info = self._repository(repo)
        fields = body if isinstance(body, dict) else {}
        title, head, base = (fields.get(name) for name in ("title", "head", "base"))
        for name, value in (("title", title), ("head", head), ("base", base)):
            if not isinstance(value, str) or not value.strip():
                raise validation_failed(field=name, code="missing_field")
        if self.repos.branch_sha(base_info.full_name, base) is None:
            raise validation_failed(field="base", code="invalid")
        head_info, head_ref = self._resolve_head(base_info, head)
        head_sha = head_info and self.repos.branch_sha(head_info.full_name, head_ref)
        if head_info is None or head_sha is None:
            raise validation_failed(field="head", code="invalid")
        self._check_new(base_info, head_info, head_ref, head_sha, base)
        text = fields.get("body")
        draft = fields.get("draft") is True
        pull = self._open(
            base_info, head_info, head_ref, head_sha, base, title, text, draft, self._bot_login
        )
        return ApiReply(201, self.pull_json(pull))

    def _list(self, repo: str, params: dict[str, str], _body: Any) -> ApiReply:
        info = self._repository(repo)
        state = params.get("state", "open")
        if state not in PULL_STATES:
            raise ApiError(422, "Validation Failed", errors=[{"field": "state", "code": "invalid"}])
        head_owner, _, head_ref = params.get("head", "").rpartition(":")
        found = [
            p
            for p in reversed(self.in_repo(info.full_name))  # newest first, as GitHub sorts
            if state in ("all", p.state)
            and (not head_ref or p.head_ref == head_ref)
            and (not head_owner or p.head_repo.partition("/")[0].lower() == head_owner.lower())
            and params.get("base", p.base_ref) == p.base_ref
        ]
        return ApiReply(200, [self.pull_json(p) for p in found])

    def _get(self, repo: str, params: dict[str, str], _body: Any) -> ApiReply:
        info = self._repository(repo)
        pull = self._find(info.full_name, int(params["number"]))
        if pull is None:
            raise ApiError(404, "Not Found")
        return ApiReply(200, self.pull_json(pull))

    # --- helpers --------------------------------------------------------------------------

    def _repository(self, repo: str) -> RepositoryInfo:
        info = self.repos.find(repo)
        if info is None:
            raise ApiError(404, "Not Found")
        return info

    def _find(self, repo: str, number: int) -> PullRequest | None:
        return self._pulls.get((repo.lower(), number))

    def _resolve_head(
        self, base_info: RepositoryInfo, head: str
    ) -> tuple[RepositoryInfo | None, str]:
        """ "branch" or "owner:branch"; another owner's head is in their fork, which keeps the
        parent's name (GitHub finds a renamed fork too; the fake does not)."""
        owner, _, ref = head.rpartition(":")
        if not owner or owner.lower() == base_info.owner.lower():
            return base_info, ref
        return self.repos.find(f"{owner}/{base_info.name}"), ref

    def _check_new(
        self, base: RepositoryInfo, head: RepositoryInfo, head_ref: str, head_sha: str, ref: str
    ) -> None:
        for pull in self.in_repo(base.full_name):
            if pull.state == "open" and (pull.head_repo.lower(), pull.head_ref, pull.base_ref) == (
                head.full_name.lower(),
                head_ref,
                ref,
            ):
                message = f"A pull request already exists for {head.owner}:{head_ref}."
                raise validation_failed(code="custom", message=message)
        base_sha = self.repos.branch_sha(base.full_name, ref)
        same_repo = head.full_name == base.full_name
        if same_repo and base_sha and self.repos.is_ancestor(base.full_name, head_sha, base_sha):
            raise validation_failed(
                code="custom", message=f"No commits between {ref} and {head_ref}"
            )

    def _open(
        self,
        base_info: RepositoryInfo,
        head_info: RepositoryInfo,
        head_ref: str,
        head_sha: str,
        base: str,
        title: str,
        body: str | None,
        draft: bool,
        user: str,
        number: int | None = None,
    ) -> PullRequest:
        repo = base_info.full_name
        key = repo.lower()
        if number is None:
            used = [FIRST_PULL_NUMBER - 1, self._last_number.get(key, 0)]
            number = max([*used, *self._issue_numbers(repo)]) + 1
        self._last_number[key] = max(number, self._last_number.get(key, 0))
        pull = PullRequest(
            id=self._next_id(),
            number=number,
            repo=repo,
            title=title,
            body=body,
            draft=draft,
            head_repo=head_info.full_name,
            head_ref=head_ref,
            head_sha=head_sha,
            base_ref=base,
            user=user,
            created_at=now_iso(),
        )
        self._pulls[(key, number)] = pull
        # GitHub's refs/pull/N/head, so a fork's PR can be fetched from the base repository.
        self.repos.copy_branch(repo, f"refs/pull/{number}/head", head_info.full_name, head_ref)
        return pull
