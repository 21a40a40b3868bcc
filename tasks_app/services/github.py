"""A small GitHub REST client: permissions, comments, repositories and pull requests.

Errors are sorted for the job's retry policy: transient ones (5xx, 429, rate-limit 403)
carry how long to wait; permanent ones end the job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings

from cli_exec.tls import client_tls

WRITE_ROLES = frozenset({"admin", "maintain", "write"})


class GitHubError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class GitHubTransientError(GitHubError):
    def __init__(
        self, message: str, status: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, status)
        self.retry_after_s = retry_after_s


class GitHubPermanentError(GitHubError):
    pass


def _retry_after(response: httpx.Response) -> float | None:
    if "retry-after" in response.headers:
        try:
            return max(0.0, float(response.headers["retry-after"]))
        except ValueError:
            return None
    if response.headers.get("x-ratelimit-remaining") == "0":
        try:
            return max(0.0, float(response.headers["x-ratelimit-reset"]) - time.time())
        except (KeyError, ValueError):
            return None
    return None


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        message = str(response.json().get("message", ""))[:200]
    except ValueError:
        message = response.text[:200]
    status = response.status_code
    request = response.request
    description = f"GitHub answered {status} to {request.method} {request.url.path}: {message}"
    exhausted = response.headers.get("x-ratelimit-remaining") == "0"
    rate_limited = status == 429 or (
        status == 403 and (exhausted or "rate limit" in message.lower())
    )
    if status >= 500 or rate_limited:
        raise GitHubTransientError(description, status, _retry_after(response))
    raise GitHubPermanentError(description, status)


@dataclass(frozen=True)
class Comment:
    id: int
    html_url: str


@dataclass(frozen=True)
class RepositoryInfo:
    full_name: str
    clone_url: str
    default_branch: str


@dataclass(frozen=True)
class PullRequest:
    number: int
    html_url: str
    head_ref: str
    head_repository: str  # "owner/name"; another one than the base's for a fork
    head_clone_url: str
    base_ref: str


class GitHubClient:
    def __init__(self, token: str | None = None, base_url: str | None = None) -> None:
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "agentsite",
        }
        token = token if token is not None else settings.GITHUB_TOKEN
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(
            base_url=base_url or settings.GITHUB_API_URL,
            headers=headers,
            timeout=settings.GITHUB_API_TIMEOUT_S,
            verify=client_tls(trust_env=True),  # httpx's default, without loading it anew
        )

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise GitHubTransientError(f"GitHub unreachable: {exc}") from exc
        _raise_for(response)
        return response

    def permission(self, repo: str, user: str) -> str:
        """The user's role on the repository ("none" for strangers)."""
        try:
            response = self._request("GET", f"/repos/{repo}/collaborators/{user}/permission")
        except GitHubPermanentError as exc:
            if exc.status == 404:  # not a collaborator (or a private repo we can't see)
                return "none"
            raise
        body = response.json()
        # GitHub reports maintain as "write" in `permission`; `role_name` is precise.
        return str(body.get("role_name") or body.get("permission") or "none")

    def create_comment(self, repo: str, number: int, body: str) -> Comment:
        data = self._request("POST", f"/repos/{repo}/issues/{number}/comments", json={"body": body})
        return Comment(int(data.json()["id"]), str(data.json().get("html_url", "")))

    def edit_comment(self, repo: str, comment_id: int, body: str) -> None:
        self._request("PATCH", f"/repos/{repo}/issues/comments/{comment_id}", json={"body": body})

    def repository(self, repo: str) -> RepositoryInfo:
        body = self._request("GET", f"/repos/{repo}").json()
        return RepositoryInfo(
            str(body.get("full_name") or repo),
            str(body["clone_url"]),
            str(body.get("default_branch") or "main"),
        )

    def branch_exists(self, repo: str, branch: str) -> bool:
        try:
            self._request("GET", f"/repos/{repo}/branches/{branch}")
        except GitHubPermanentError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def pull_request(self, repo: str, number: int) -> PullRequest:
        return _pull(self._request("GET", f"/repos/{repo}/pulls/{number}").json())

    def create_pull_request(
        self, repo: str, *, title: str, head: str, base: str, body: str, draft: bool
    ) -> PullRequest:
        """Open a pull request; one that already exists for `head` is returned instead."""
        payload = {"title": title, "head": head, "base": base, "body": body, "draft": draft}
        try:
            return _pull(self._request("POST", f"/repos/{repo}/pulls", json=payload).json())
        except GitHubPermanentError as exc:
            if exc.status != 422:
                raise
            owner = repo.split("/", 1)[0]
            found = self._request(
                "GET", f"/repos/{repo}/pulls", params={"head": f"{owner}:{head}", "state": "open"}
            ).json()
            if not found:
                raise
            return _pull(found[0])


def _pull(body: dict[str, Any]) -> PullRequest:
    head, base = body.get("head") or {}, body.get("base") or {}
    head_repo = head.get("repo") or {}
    return PullRequest(
        number=int(body["number"]),
        html_url=str(body.get("html_url", "")),
        head_ref=str(head.get("ref", "")),
        head_repository=str(head_repo.get("full_name", "")),
        head_clone_url=str(head_repo.get("clone_url", "")),
        base_ref=str(base.get("ref", "")),
    )
