"""A scripted fake of GitHub: the REST v3 API (collaborator permission, issue and review
comments, repositories, branches, pull requests) and git smart HTTP over real repositories, for
tests and benchmarks of the webhook jobs and the workers.

In-process: `with FakeGitHub(token="t") as fake: fake.create_repository("o/r")`; clone from
`{fake.base_url}/o/r.git`.
As a process: `python -m tests.fakes.github_api --port 0 [--token T] [--bot-login L]
[--unknown-permission ROLE] [--repos-root DIR]` prints `LISTENING <url>`; drive it with
`FakeGitHubControl` (control routes in github_http.py).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import dataclasses
import hmac
import itertools
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fakes.git_repos import SOMEONE, GitRepositories, UnknownRepository
from tests.fakes.github_control import FakeGitHubControl, RecordedRequest
from tests.fakes.github_faults import ControlInputError, Fault, FaultQueue, FaultScripting
from tests.fakes.github_http import FakeGitHubHandler
from tests.fakes.github_pulls import PullRequests
from tests.fakes.github_state import ROLES, ApiReply, CommentKind, GitHubState
from tests.fakes.http_base import BackgroundServer, serve_until_signalled

__all__ = [
    "ROLES",
    "ControlInputError",
    "FakeGitHub",
    "FakeGitHubControl",
    "Fault",
    "RecordedRequest",
    "UnknownRepository",
]

RATE_LIMIT = 5000
API_VERSION = "2022-11-28"


@dataclass(frozen=True)
class Admission:
    """What the handler does with a request the fake just recorded: refuse it (401), apply
    `fault`, or answer it; `headers` are the rate-limit and request-id headers of the reply;
    `user` is who the credentials name (git's REMOTE_USER)."""

    seq: int
    authorized: bool
    fault: Fault | None
    headers: dict[str, str]
    user: str


class FakeGitHub(FaultScripting):
    """The fake GitHub API, served on 127.0.0.1 from a daemon thread; thread-safe.

    With `token`, API and git requests need `Authorization: Bearer <token>`, `token <token>`
    or `Basic base64(<anyone>:<token>)`, else 401 ("Bad credentials"; git's asks for Basic).
    `unknown_permission` is what the permission route says of users nobody scripted: None
    answers 404 like GitHub for a private repo; "read" is a public repo. Comments and PRs
    opened through the API are by `bot_login` (type "Bot"). Repositories live in `repos_root`
    (default: a temporary directory removed on close).
    """

    def __init__(
        self,
        *,
        port: int = 0,
        token: str | None = None,
        bot_login: str = "agentsite-bot",
        unknown_permission: str | None = None,
        repos_root: Path | str | None = None,
    ) -> None:
        self.token = token
        self.bot_login = bot_login
        self.repositories = GitRepositories(repos_root)
        self._state = GitHubState(
            api_url="", bot_login=bot_login, unknown_permission=unknown_permission
        )
        self._pulls = PullRequests(
            self.repositories,
            bot_login=bot_login,
            next_id=self._state.next_id,
            issue_numbers=self._state.issue_numbers,
        )
        self._state.add_routes(self._pulls.routes())
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
        try:
            self._server = BackgroundServer(self, FakeGitHubHandler, port=port, name="fake-github")
        except BaseException:
            self.repositories.close()
            raise
        self.base_url = self._server.base_url
        self._state.api_url = self._pulls.api_url = self.base_url

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
        """Forget roles, comments, pull requests, faults and recordings, delete every
        repository, and re-arm delays and hangs."""
        with self._lock:
            self._state.clear()
            self._pulls.clear()
            self._faults.clear()
            self._requests.clear()
            self.repositories.remove_all()
        self.released.clear()

    # --- git repositories and pull requests -----------------------------------------------

    def create_repository(
        self,
        full_name: str,
        *,
        default_branch: str = "main",
        files: Mapping[str, str] | None = None,
        private: bool = True,
    ) -> None:
        """A bare repository whose `default_branch` holds one commit of `files` (None: a
        README), served at {base_url}/{full_name}.git. ValueError if it exists."""
        self.repositories.create(
            full_name, default_branch=default_branch, files=files, private=private
        )

    def commit_files(
        self,
        full_name: str,
        branch: str,
        files: Mapping[str, str | None],
        message: str,
        *,
        author: str = SOMEONE,
    ) -> str:
        """A commit pushed by someone else: `files` changed (None deletes one) on `branch`,
        created from the default branch if missing. Returns its sha."""
        return self.repositories.commit(full_name, branch, files, message, author=author)

    def branch_sha(self, full_name: str, branch: str) -> str | None:
        return self.repositories.branch_sha(full_name, branch)

    def log(self, full_name: str, branch: str) -> list[str]:
        """Commit subjects on `branch`, newest first ([] when there is no such branch)."""
        return self.repositories.log(full_name, branch)

    def read_file(self, full_name: str, branch: str, path: str) -> str | None:
        return self.repositories.read_file(full_name, branch, path)

    def repo_path(self, full_name: str) -> Path:
        """The bare repository on disk; UnknownRepository if there is none."""
        return self.repositories.require(full_name).path

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
        """An open PR from `head_ref` into `base`, as the REST API answers it. `head_repo` (a
        fork's full name) holds the head branch; it is forked from `full_name` if missing, and
        a missing head branch starts at `base`. `user` defaults to the head repo's owner."""
        with self._lock:
            pull = self._pulls.add(
                full_name,
                head_ref=head_ref,
                base=base,
                head_repo=head_repo,
                title=title,
                body=body,
                draft=draft,
                user=user,
                number=number,
            )
            return self._pulls.pull_json(pull)

    def pulls(self, full_name: str) -> list[dict[str, Any]]:
        """`full_name`'s pull requests by number, as the REST API answers them."""
        with self._lock:
            return [self._pulls.pull_json(p) for p in self._pulls.in_repo(full_name)]

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
        self.repositories.close()

    # --- used by the request handler ------------------------------------------------------

    def admit(
        self,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: Any,
        *,
        git: bool = False,
    ) -> Admission:
        """Record an API (or `git`) request and decide its fate; pair with finish()."""
        credentials = parse_credentials(headers.get("authorization", ""))
        authorized = self._authorized(credentials)
        with self._lock:
            seq = next(self._seqs)
            request_id = f"FAKE:{seq:04X}:{seq:07X}:{seq:07X}:{int(time.time()):08X}"
            started = time.monotonic()
            self._requests[seq] = RecordedRequest(
                method, path, query, headers, body, request_id, started
            )
            self._in_flight += 1
            fault = self._faults.take(method, path) if authorized else None
            if authorized and not git:  # git traffic has no rate limit on GitHub either
                self._rate_used += 1
            reply_headers = {"x-github-request-id": request_id}
            if not git:
                reply_headers |= {
                    "x-ratelimit-limit": str(RATE_LIMIT),
                    "x-ratelimit-remaining": str(max(0, RATE_LIMIT - self._rate_used)),
                    "x-ratelimit-reset": str(self._rate_reset),
                    "x-ratelimit-used": str(self._rate_used),
                    "x-ratelimit-resource": "core",
                    "x-github-api-version-selected": API_VERSION,
                    "x-github-media-type": "github.v3; format=json",
                }
            user = credentials[0] if credentials else "anonymous"
            return Admission(seq, authorized, fault, reply_headers, user)

    def answer(self, method: str, path: str, raw: bytes, query: str = "") -> ApiReply:
        with self._lock:
            return self._state.answer(method, path, raw, query)

    def finish(self, seq: int, status: int | None) -> None:
        """`status` None: the client got no answer (it hung up, or the fake closed)."""
        with self._lock:
            self._in_flight -= 1
            record = self._requests.get(seq)  # reset() may have forgotten it meanwhile
            if record is not None:
                ended = time.monotonic()
                self._requests[seq] = dataclasses.replace(record, ended_at=ended, status=status)

    def _authorized(self, credentials: tuple[str, str] | None) -> bool:
        if self.token is None:
            return True
        if credentials is None:
            return False
        return hmac.compare_digest(credentials[1].encode(), self.token.encode())


def parse_credentials(authorization: str) -> tuple[str, str] | None:
    """(user, token) from `Bearer <token>`, `token <token>` or `Basic base64(user:token)`, the
    forms GitHub takes for API and git alike; None when the header has none of them."""
    scheme, _, credential = authorization.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() in ("bearer", "token"):
        return "x-access-token", credential
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credential, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, token = decoded.partition(":")
    return (user, token) if colon else None


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
    parser.add_argument(
        "--repos-root",
        default=None,
        help="where hosted repositories live (default: a temporary directory removed on exit)",
    )
    args = parser.parse_args(argv)
    return serve_until_signalled(
        lambda: FakeGitHub(
            port=args.port,
            token=args.token,
            bot_login=args.bot_login,
            unknown_permission=args.unknown_permission,
            repos_root=args.repos_root,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
