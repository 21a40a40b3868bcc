"""What the fake GitHub knows (collaborator roles, comments) and the REST v3 answers it gives."""

from __future__ import annotations

import itertools
import json
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from http import HTTPStatus
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote

ROLES = ("admin", "maintain", "write", "triage", "read", "none")
# `permission` keeps the legacy base roles: maintain reads as write and triage as read (REST
# docs, "Get repository permissions for a user"); only `role_name` tells them apart.
LEGACY_PERMISSION = {
    "admin": "admin",
    "maintain": "write",
    "write": "write",
    "triage": "read",
    "read": "read",
    "none": "none",
}
DOCS_URL = "https://docs.github.com/rest"
# Real comment ids passed 2**31 long ago; a 32-bit column or parser must fail here as it would
# against GitHub.
FIRST_COMMENT_ID = 2_500_000_001
MAX_COMMENT_CHARS = 65_536

CommentKind = Literal["issue", "review"]


def error_body(status: int, message: str | None = None, **extra: Any) -> dict[str, Any]:
    """GitHub's JSON error shape; `message` defaults to the status's reason phrase."""
    if message is None:
        try:
            message = HTTPStatus(status).phrase
        except ValueError:
            message = "Error"
    return {"message": message, "documentation_url": DOCS_URL, "status": str(status), **extra}


class ApiError(Exception):
    """An answer other than success; the handler sends `status` with `body`."""

    def __init__(self, status: int, message: str | None = None, **extra: Any) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.body = error_body(status, message, **extra)


@dataclass(frozen=True)
class ApiReply:
    """Status, JSON payload (a str is sent as text/html) and headers beyond the standard ones."""

    status: int
    payload: Any
    headers: dict[str, str] = field(default_factory=dict)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def user_json(login: str, *, kind: str = "User") -> dict[str, Any]:
    # A stable id per login, so the same user has the same id in every answer.
    user_id = zlib.crc32(login.lower().encode()) & 0x7FFFFFFF
    return {
        "login": login,
        "id": user_id,
        "node_id": f"U_fake{user_id}",
        "type": kind,
        "site_admin": False,
        # GitHub App bots ("name[bot]") have their page under /apps/.
        "html_url": f"https://github.com/apps/{login.removesuffix('[bot]')}"
        if login.endswith("[bot]")
        else f"https://github.com/{login}",
    }


def _permissions_json(role: str) -> dict[str, bool]:
    rank = ROLES[::-1].index(role)  # none 0, read 1, triage 2, write 3, maintain 4, admin 5
    return {
        "admin": rank >= 5,
        "maintain": rank >= 4,
        "push": rank >= 3,
        "triage": rank >= 2,
        "pull": rank >= 1,
    }


@dataclass
class Comment:
    """An issue (or PR conversation) comment, or a PR review comment, with its edit history."""

    id: int
    kind: CommentKind
    repo: str
    number: int
    body: str
    user: dict[str, Any]
    created_at: str
    updated_at: str
    history: list[str] = field(default_factory=list)
    in_reply_to_id: int | None = None

    def to_json(self, api_url: str) -> dict[str, Any]:
        """The REST object, as GitHub answers it (no edit history there)."""
        repo_api = f"{api_url}/repos/{self.repo}"
        fields: dict[str, Any] = {
            "id": self.id,
            "body": self.body,
            "user": dict(self.user),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "author_association": "NONE",
        }
        if self.kind == "issue":
            fields |= {
                "node_id": f"IC_fake{self.id}",
                "url": f"{repo_api}/issues/comments/{self.id}",
                "html_url": f"https://github.com/{self.repo}/issues/{self.number}"
                f"#issuecomment-{self.id}",
                "issue_url": f"{repo_api}/issues/{self.number}",
            }
            return fields
        fields |= {
            "node_id": f"PRRC_fake{self.id}",
            "url": f"{repo_api}/pulls/comments/{self.id}",
            "html_url": f"https://github.com/{self.repo}/pull/{self.number}#discussion_r{self.id}",
            "pull_request_url": f"{repo_api}/pulls/{self.number}",
            "pull_request_review_id": self.id,
        }
        if self.in_reply_to_id is not None:
            fields["in_reply_to_id"] = self.in_reply_to_id
        return fields

    def to_inspection_json(self, api_url: str) -> dict[str, Any]:
        """The REST object plus `history`: earlier bodies, oldest first (for tests)."""
        return self.to_json(api_url) | {"history": list(self.history)}


# A view gets the repository ("owner/name" as asked), the other path parameters over the query
# parameters, and the parsed JSON body.
Route = tuple[str, re.Pattern[str], Callable[[str, dict[str, str], Any], ApiReply]]
_REPO = r"/repos/(?P<owner>[^/]+)/(?P<name>[^/]+)"


class GitHubState:
    """Roles and comments, and the REST routes over them. Not thread-safe: FakeGitHub holds
    its lock around every call."""

    def __init__(self, *, api_url: str, bot_login: str, unknown_permission: str | None) -> None:
        if unknown_permission is not None and unknown_permission not in ROLES:
            raise ValueError(f"unknown_permission must be None or one of {ROLES}")
        self.api_url = api_url
        self.bot = user_json(bot_login, kind="Bot")
        self.unknown_permission = unknown_permission
        self._roles: dict[tuple[str, str], tuple[str, str]] = {}
        self._comments: dict[int, Comment] = {}
        self._ids = itertools.count(FIRST_COMMENT_ID)
        comment_id = r"/(?P<comment_id>\d+)"
        self._routes: list[Route] = [
            ("GET", repo_route(r"/collaborators/(?P<login>[^/]+)/permission"), self._permission),
            ("POST", repo_route(r"/issues/(?P<number>\d+)/comments"), self._create_issue_comment),
            ("GET", repo_route(r"/issues/comments" + comment_id), partial(self._get, kind="issue")),
            (
                "PATCH",
                repo_route(r"/issues/comments" + comment_id),
                partial(self._edit, kind="issue"),
            ),
            (
                "POST",
                repo_route(r"/pulls/(?P<number>\d+)/comments" + comment_id + "/replies"),
                self._reply_to_review_comment,
            ),
            ("GET", repo_route(r"/pulls/comments" + comment_id), partial(self._get, kind="review")),
            (
                "PATCH",
                repo_route(r"/pulls/comments" + comment_id),
                partial(self._edit, kind="review"),
            ),
        ]

    # --- scripting and inspection ---------------------------------------------------------

    def set_role(self, repo: str, login: str, role: str | None) -> None:
        """`role` None forgets the user, who then gets the unknown-user answer."""
        key = (repo.lower(), login.lower())
        if role is None:
            self._roles.pop(key, None)
        elif role in ROLES:
            self._roles[key] = (login, role)
        else:
            raise ValueError(f"role {role!r} is not one of {ROLES}")

    def add_review_comment(self, repo: str, number: int, *, login: str, body: str) -> Comment:
        """A PR review comment by `login`, such as the one a review-comment webhook names."""
        return self._add_comment("review", repo, number, body, user_json(login))

    def comments(
        self, repo: str | None = None, number: int | None = None, kind: CommentKind | None = None
    ) -> list[Comment]:
        return [
            c
            for c in self._comments.values()
            if (repo is None or c.repo.lower() == repo.lower())
            and (number is None or c.number == number)
            and (kind is None or c.kind == kind)
        ]

    def comment(self, comment_id: int) -> Comment | None:
        return self._comments.get(comment_id)

    def clear(self) -> None:
        """Forget roles and comments; ids keep counting so they stay unique across resets."""
        self._roles.clear()
        self._comments.clear()

    def next_id(self) -> int:
        """A fresh id, unique among everything the fake numbers (comments, pull requests)."""
        return next(self._ids)

    def issue_numbers(self, repo: str) -> set[int]:
        """Issue and pull request numbers the comments on `repo` use."""
        return {c.number for c in self.comments(repo)}

    def add_routes(self, routes: list[Route]) -> None:
        self._routes.extend(routes)

    # --- the REST API ---------------------------------------------------------------------

    def answer(self, method: str, path: str, raw: bytes, query: str = "") -> ApiReply:
        """The answer to one API request that got past authentication and scripted faults."""
        try:
            for route_method, pattern, view in self._routes:
                match = pattern.fullmatch(path.rstrip("/"))
                if match and route_method == method:
                    params = dict(parse_qsl(query))
                    params |= {k: unquote(v) for k, v in match.groupdict().items()}
                    repo = f"{params.pop('owner')}/{params.pop('name')}"
                    return view(repo, params, _parse_json(raw))
            raise ApiError(404, "Not Found")
        except ApiError as exc:
            return ApiReply(exc.status, exc.body)

    def _permission(self, repo: str, params: dict[str, str], _body: Any) -> ApiReply:
        login = params["login"]
        login, role = self._roles.get((repo.lower(), login.lower()), (login, None))
        role = role or self.unknown_permission
        if role is None:
            raise ApiError(404, "Not Found")
        user = user_json(login) | {"permissions": _permissions_json(role), "role_name": role}
        payload = {"permission": LEGACY_PERMISSION[role], "role_name": role, "user": user}
        return ApiReply(200, payload)

    def _create_issue_comment(self, repo: str, params: dict[str, str], body: Any) -> ApiReply:
        text = _comment_text(body)
        comment = self._add_comment("issue", repo, int(params["number"]), text, self.bot)
        return ApiReply(201, comment.to_json(self.api_url))

    def _reply_to_review_comment(self, repo: str, params: dict[str, str], body: Any) -> ApiReply:
        parent = self._find(repo, "review", params["comment_id"])
        if parent.number != int(params["number"]):
            raise ApiError(404, "Not Found")
        text = _comment_text(body)
        reply = self._add_comment("review", repo, parent.number, text, self.bot)
        reply.in_reply_to_id = parent.in_reply_to_id or parent.id
        return ApiReply(201, reply.to_json(self.api_url))

    def _get(self, repo: str, params: dict[str, str], _body: Any, *, kind: CommentKind) -> ApiReply:
        comment = self._find(repo, kind, params["comment_id"])
        return ApiReply(200, comment.to_json(self.api_url))

    def _edit(self, repo: str, params: dict[str, str], body: Any, *, kind: CommentKind) -> ApiReply:
        comment = self._find(repo, kind, params["comment_id"])
        text = _comment_text(body)
        comment.history.append(comment.body)
        comment.body = text
        comment.updated_at = now_iso()
        return ApiReply(200, comment.to_json(self.api_url))

    def _find(self, repo: str, kind: CommentKind, comment_id: str) -> Comment:
        comment = self._comments.get(int(comment_id))
        if comment is None or comment.kind != kind or comment.repo.lower() != repo.lower():
            raise ApiError(404, "Not Found")
        return comment

    def _add_comment(
        self, kind: CommentKind, repo: str, number: int, body: str, user: dict[str, Any]
    ) -> Comment:
        created = now_iso()
        comment = Comment(next(self._ids), kind, repo, number, body, user, created, created)
        self._comments[comment.id] = comment
        return comment


def repo_route(suffix: str) -> re.Pattern[str]:
    return re.compile(_REPO + suffix)


def _parse_json(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, "Problems parsing JSON") from exc


def _comment_text(body: Any) -> str:
    text = body.get("body") if isinstance(body, dict) else None
    if text is None:
        raise ApiError(422, 'Invalid request.\n\n"body" wasn\'t supplied.')
    if not isinstance(text, str):
        raise ApiError(422, f"Invalid request.\n\nFor 'properties/body', {text!r} is not a string.")
    if len(text) > MAX_COMMENT_CHARS:
        error = {
            "resource": "IssueComment",
            "code": "custom",
            "field": "body",
            "message": f"body is too long (maximum is {MAX_COMMENT_CHARS} characters)",
        }
        raise ApiError(422, "Validation Failed", errors=[error])
    return text
