"""Driving a FakeGitHub in another process through its /_fake/ control routes (github_http.py),
and the recorded-request value both sides share."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fakes.git_repos import SOMEONE
from tests.fakes.github_faults import Fault, FaultScripting
from tests.fakes.github_state import CommentKind
from tests.fakes.http_base import ControlClient


@dataclass(frozen=True)
class RecordedRequest:
    """One API or git request as the fake saw it. Header names are lower case; `body` is the
    parsed JSON (None when empty, not JSON, or a git request); times are time.monotonic() in
    the fake's process."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    request_id: str
    started_at: float
    ended_at: float | None = None
    status: int | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RecordedRequest:
        return cls(**raw)


class FakeGitHubControl(ControlClient, FaultScripting):
    """Scripts and inspects a FakeGitHub in another process, through its /_fake/ routes; the
    same methods as FakeGitHub, with the same values."""

    def set_permission(self, repo: str, user: str, permission: str | None) -> None:
        payload = {"repo": repo, "user": user, "permission": permission}
        self._call("POST", "/_fake/permissions", payload)

    def script(self, fault: Fault) -> None:
        self._call("POST", "/_fake/faults", fault.to_dict())

    def add_review_comment(self, repo: str, number: int, *, user: str, body: str) -> dict[str, Any]:
        payload = {"repo": repo, "number": number, "user": user, "body": body}
        return self._call("POST", "/_fake/review-comments", payload)

    def comments(
        self, repo: str | None = None, number: int | None = None, *, kind: CommentKind | None = None
    ) -> list[dict[str, Any]]:
        query = {"repo": repo, "number": number, "kind": kind}
        return self._call("GET", "/_fake/comments", query=query)

    def requests(
        self, method: str | None = None, path_prefix: str | None = None
    ) -> list[RecordedRequest]:
        query = {"method": method, "path_prefix": path_prefix}
        recorded = self._call("GET", "/_fake/requests", query=query)
        return [RecordedRequest.from_json(r) for r in recorded]

    # --- git repositories and pull requests -----------------------------------------------

    def create_repository(
        self,
        full_name: str,
        *,
        default_branch: str = "main",
        files: Mapping[str, str] | None = None,
        private: bool = True,
    ) -> None:
        payload = {
            "full_name": full_name,
            "default_branch": default_branch,
            "files": None if files is None else dict(files),
            "private": private,
        }
        self._call("POST", "/_fake/repos", payload)

    def commit_files(
        self,
        full_name: str,
        branch: str,
        files: Mapping[str, str | None],
        message: str,
        *,
        author: str = SOMEONE,
    ) -> str:
        payload = {
            "full_name": full_name,
            "branch": branch,
            "files": dict(files),
            "message": message,
            "author": author,
        }
        return self._call("POST", "/_fake/repos/commits", payload)["sha"]

    def branch_sha(self, full_name: str, branch: str) -> str | None:
        query = {"repo": full_name, "branch": branch}
        return self._call("GET", "/_fake/repos/branch", query=query)["sha"]

    def log(self, full_name: str, branch: str) -> list[str]:
        return self._call("GET", "/_fake/repos/log", query={"repo": full_name, "branch": branch})

    def read_file(self, full_name: str, branch: str, path: str) -> str | None:
        query = {"repo": full_name, "branch": branch, "path": path}
        return self._call("GET", "/_fake/repos/file", query=query)["content"]

    def repo_path(self, full_name: str) -> Path:
        """Where the bare repository is, on the fake's machine."""
        return Path(self._call("GET", "/_fake/repos/path", query={"repo": full_name})["path"])

    def add_pull_request(
        self,
        full_name: str,
        *,
        number: int | None = None,
        head_ref: str,
        base: str = "main",
        head_repo: str | None = None,
        title: str = "A pull request",
        body: str | None = None,
        draft: bool = False,
        user: str | None = None,
    ) -> dict[str, Any]:
        payload = {
            "full_name": full_name,
            "number": number,
            "head_ref": head_ref,
            "base": base,
            "head_repo": head_repo,
            "title": title,
            "body": body,
            "draft": draft,
            "user": user,
        }
        return self._call("POST", "/_fake/pulls", payload)

    def pulls(self, full_name: str) -> list[dict[str, Any]]:
        return self._call("GET", "/_fake/pulls", query={"repo": full_name})
