"""A scripted fake of the GitHub REST v3 API (collaborator permission, issue and review comments)
for tests and benchmarks of the webhook jobs.

In-process: `with FakeGitHub(token="t") as fake: fake.set_permission("o/r", "alice", "write")`.
As a process: `python -m tests.fakes.github_api --port 0 [--token T] [--bot-login L]
[--unknown-permission ROLE]` prints `LISTENING <url>`; drive it with `FakeGitHubControl`
(control routes in github_http.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import hmac
import itertools
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from tests.fakes.github_faults import ControlInputError, Fault, FaultQueue, FaultScripting
from tests.fakes.github_http import FakeGitHubHandler
from tests.fakes.github_state import ROLES, ApiReply, CommentKind, GitHubState
from tests.fakes.http_base import BackgroundServer, ControlClient, serve_until_signalled

__all__ = [
    "ROLES",
    "ControlInputError",
    "FakeGitHub",
    "FakeGitHubControl",
    "Fault",
    "RecordedRequest",
]

RATE_LIMIT = 5000
API_VERSION = "2022-11-28"


@dataclass(frozen=True)
class RecordedRequest:
    """One API request as the fake saw it. Header names are lower case; `body` is the parsed
    JSON (None when empty or not JSON); times are time.monotonic() in the fake's process."""

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


@dataclass(frozen=True)
class Admission:
    """What the handler does with a request the fake just recorded: refuse it (401), apply
    `fault`, or answer it; `headers` are the rate-limit and request-id headers of the reply."""

    seq: int
    authorized: bool
    fault: Fault | None
    headers: dict[str, str]


class FakeGitHub(FaultScripting):
    """The fake GitHub API, served on 127.0.0.1 from a daemon thread; thread-safe.

    With `token`, API requests need `Authorization: Bearer <token>` (or `token <token>`), else
    401 "Bad credentials". `unknown_permission` is what the permission route says of users
    nobody scripted: None answers 404 like GitHub for a private repo; "read" is a public repo.
    Comments are made by `bot_login` (type "Bot").
    """

    def __init__(
        self,
        *,
        port: int = 0,
        token: str | None = None,
        bot_login: str = "agentsite-bot",
        unknown_permission: str | None = None,
    ) -> None:
        self.token = token
        self.bot_login = bot_login
        self._state = GitHubState(
            api_url="", bot_login=bot_login, unknown_permission=unknown_permission
        )
        self._lock = threading.Lock()
        self._faults = FaultQueue()
        self._requests: dict[int, RecordedRequest] = {}
        self._seqs = itertools.count(1)
        self._in_flight = 0
        self._rate_used = 0
        self._rate_reset = int(time.time()) + 3600
        self.released = threading.Event()
        self.closing = threading.Event()
        self._closed = False
        self._server = BackgroundServer(self, FakeGitHubHandler, port=port, name="fake-github")
        self.base_url = self._server.base_url
        self._state.api_url = self.base_url

    def __enter__(self) -> FakeGitHub:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- scripting ------------------------------------------------------------------------

    def set_permission(self, repo: str, user: str, permission: str | None) -> None:
        """`user`'s role on `repo` ("owner/name"): one of ROLES; None forgets the user.
        The answer's `permission` is the legacy one (maintain -> write, triage -> read) and
        `role_name` the role itself, as on GitHub."""
        with self._lock:
            self._state.set_role(repo, user, permission)

    def script(self, fault: Fault) -> None:
        """Queue a fault; see fail(), slow() and hang() for the usual ones."""
        with self._lock:
            self._faults.add(fault)

    def add_review_comment(self, repo: str, number: int, *, user: str, body: str) -> dict[str, Any]:
        """A PR review comment by `user` (the one a review-comment webhook names), so the
        service can reply to it; returns it as comments() would."""
        with self._lock:
            comment = self._state.add_review_comment(repo, number, login=user, body=body)
            return comment.to_inspection_json(self.base_url)

    def release(self) -> None:
        """End every delay and hang, current and future (until reset()): each request then
        gets its scripted status, or the normal answer."""
        self.released.set()

    def reset(self) -> None:
        """Forget roles, comments, faults and recordings, and re-arm delays and hangs."""
        with self._lock:
            self._state.clear()
            self._faults.clear()
            self._requests.clear()
        self.released.clear()

    # --- inspection -----------------------------------------------------------------------

    def comments(
        self, repo: str | None = None, number: int | None = None, *, kind: CommentKind | None = None
    ) -> list[dict[str, Any]]:
        """Current comments, oldest first, as the REST objects plus `history` (earlier bodies,
        oldest first). `kind` "issue" (issue and PR conversation) or "review"; None: both."""
        with self._lock:
            found = self._state.comments(repo, number, kind)
            return [c.to_inspection_json(self.base_url) for c in found]

    def comment(self, comment_id: int) -> dict[str, Any] | None:
        with self._lock:
            found = self._state.comment(comment_id)
            return None if found is None else found.to_inspection_json(self.base_url)

    def requests(
        self, method: str | None = None, path_prefix: str | None = None
    ) -> list[RecordedRequest]:
        """Recorded API requests (control calls excluded), oldest first."""
        with self._lock:
            return [
                r
                for r in self._requests.values()
                if (method is None or r.method == method.upper())
                and (path_prefix is None or r.path.startswith(path_prefix))
            ]

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "in_flight": self._in_flight,
                "total": len(self._requests),
                "faults_pending": self._faults.pending(),
                "comments": len(self._state.comments()),
            }

    def close(self) -> None:
        """End delays and hangs, stop serving, hang up on clients and join every thread."""
        if self._closed:
            return
        self._closed = True
        self.closing.set()
        self.released.set()
        self._server.close()

    # --- used by the request handler ------------------------------------------------------

    def admit(
        self, method: str, path: str, query: str, headers: dict[str, str], body: Any
    ) -> Admission:
        """Record an API request and decide its fate; pair with finish()."""
        authorized = self._authorized(headers.get("authorization", ""))
        with self._lock:
            seq = next(self._seqs)
            request_id = f"FAKE:{seq:04X}:{seq:07X}:{seq:07X}:{int(time.time()):08X}"
            started = time.monotonic()
            self._requests[seq] = RecordedRequest(
                method, path, query, headers, body, request_id, started
            )
            self._in_flight += 1
            fault = self._faults.take(method, path) if authorized else None
            if authorized:
                self._rate_used += 1
            reply_headers = {
                "x-ratelimit-limit": str(RATE_LIMIT),
                "x-ratelimit-remaining": str(max(0, RATE_LIMIT - self._rate_used)),
                "x-ratelimit-reset": str(self._rate_reset),
                "x-ratelimit-used": str(self._rate_used),
                "x-ratelimit-resource": "core",
                "x-github-request-id": request_id,
                "x-github-api-version-selected": API_VERSION,
                "x-github-media-type": "github.v3; format=json",
            }
            return Admission(seq, authorized, fault, reply_headers)

    def answer(self, method: str, path: str, raw: bytes) -> ApiReply:
        with self._lock:
            return self._state.answer(method, path, raw)

    def finish(self, seq: int, status: int | None) -> None:
        """`status` None: the client got no answer (it hung up, or the fake closed)."""
        with self._lock:
            self._in_flight -= 1
            record = self._requests.get(seq)  # reset() may have forgotten it meanwhile
            if record is not None:
                ended = time.monotonic()
                self._requests[seq] = dataclasses.replace(record, ended_at=ended, status=status)

    def _authorized(self, authorization: str) -> bool:
        if self.token is None:
            return True
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() not in ("bearer", "token"):
            return False
        return hmac.compare_digest(credential.strip().encode(), self.token.encode())


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--token", default=None, help="require this token (else any or none)")
    parser.add_argument("--bot-login", default="agentsite-bot", help="author of our comments")
    parser.add_argument(
        "--unknown-permission",
        choices=ROLES,
        default=None,
        help="role of users nobody scripted (default: 404 Not Found)",
    )
    args = parser.parse_args(argv)
    return serve_until_signalled(
        lambda: FakeGitHub(
            port=args.port,
            token=args.token,
            bot_login=args.bot_login,
            unknown_permission=args.unknown_permission,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
