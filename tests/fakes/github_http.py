"""HTTP handler of the fake GitHub: the REST routes of github_state and github_pulls, git smart
HTTP ({base_url}/{owner}/{name}.git/..., served by git_http) and the control API.

Control API (for a fake running as its own process; no token needed):
  POST /_fake/permissions      {"repo": "o/r", "user": login, "permission": role or null}
  POST /_fake/faults           a fault dict (github_faults.Fault.to_dict)
  POST /_fake/review-comments  {"repo", "number", "user", "body"} -> 201 the review comment
  GET  /_fake/comments[?repo=o/r&number=N&kind=issue|review]  comments with "history"
  GET  /_fake/requests[?method=M&path_prefix=P]  recorded API requests, oldest first
  GET  /_fake/stats            {"in_flight", "total", "faults_pending", "comments"}
  POST /_fake/release          end every delay and hang, now and until reset
  POST /_fake/reset            forget roles, comments, PRs, faults, recordings, repositories
  POST /_fake/repos            {"full_name", "default_branch"?, "files"?, "private"?} -> 201
  POST /_fake/repos/commits    {"full_name", "branch", "files", "message", "author"?}
                               -> 201 {"sha"}
  GET  /_fake/repos/branch?repo=o/r&branch=B       {"sha": sha or null}
  GET  /_fake/repos/log?repo=o/r&branch=B          commit subjects, newest first
  GET  /_fake/repos/file?repo=o/r&branch=B&path=P  {"content": text or null}
  GET  /_fake/repos/path?repo=o/r                  {"path": the bare repository on disk}
  POST /_fake/pulls            {"full_name", "head_ref", "number"?, "base"?, "head_repo"?,
                               "title"?, "body"?, "draft"?, "user"?} -> 201 the PR
  GET  /_fake/pulls?repo=o/r   its PRs by number
Unknown repositories answer 404, bad input 400, a failing git command 500. Faults apply to
git paths too ("/o/r.git/git-receive-pack"); their status answers are text/plain there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.git_http import BackendRequest, GitPath, match_git_path, run_http_backend
from tests.fakes.git_repos import SOMEONE, GitCommandError
from tests.fakes.github_faults import ControlInputError, Fault
from tests.fakes.github_state import ApiReply, error_body
from tests.fakes.http_base import ClientGone, FakeRequestHandler

if TYPE_CHECKING:
    from tests.fakes.github_api import Admission, FakeGitHub

JSON_TYPE = "application/json; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"
GIT_AUTH_FAILED = (
    "Invalid username or token. Password authentication is not supported for Git operations.\n"
)


class FakeGitHubHandler(FakeRequestHandler):
    server_version = "GitHub.com"
    sys_version = ""

    @property
    def fake(self) -> FakeGitHub:
        return self.server.fake  # type: ignore[attr-defined]

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        git_path = match_git_path(url.path) if method in ("GET", "POST") else None
        if git_path is not None:
            self._answer_git(method, url.path, url.query, git_path)  # streams the body itself
            return
        raw = self.read_body()
        if url.path.startswith("/_fake/"):
            self._answer_control(method, url.path, parse_qs(url.query), raw)
        else:
            self._answer_api(method, url.path, url.query, raw)

    # --- the REST API ---------------------------------------------------------------------

    def _answer_api(self, method: str, path: str, query: str, raw: bytes) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        admission = self.fake.admit(method, path, query, headers, _json_or_none(raw))
        finished = False
        try:
            reply = self._reply(admission, method, path, query, raw)
            # Finished before the bytes go out: a client holding the answer can rely on the
            # recording (status, ended_at, in_flight) already saying so.
            self.fake.finish(admission.seq, reply.status)
            finished = True
            self._send_reply(reply, admission.headers)
        except (ClientGone, OSError):
            self.close_connection = True
        finally:
            if not finished:
                self.fake.finish(admission.seq, None)

    def _reply(
        self, admission: Admission, method: str, path: str, query: str, raw: bytes
    ) -> ApiReply:
        if not admission.authorized:
            return ApiReply(401, error_body(401, "Bad credentials"))
        fault = admission.fault
        if fault is not None and (fault.delay_s or fault.hang):
            seconds = None if fault.hang else fault.delay_s
            self.pause(seconds, released=self.fake.released, closing=self.fake.closing)
        if fault is not None and fault.status is not None:
            body = error_body(fault.status) if fault.body is None else fault.body
            return ApiReply(fault.status, body, fault.headers)
        return self.fake.answer(method, path, raw, query)

    def _send_reply(self, reply: ApiReply, standard_headers: dict[str, str]) -> None:
        headers = standard_headers | {name.lower(): value for name, value in reply.headers.items()}
        if isinstance(reply.payload, str):
            data = reply.payload.encode()
            self.send_bytes(reply.status, data, content_type=HTML_TYPE, headers=headers)
        else:
            self.send_json(reply.status, reply.payload, headers, content_type=JSON_TYPE)

    # --- git smart HTTP -------------------------------------------------------------------

    def _answer_git(self, method: str, path: str, query: str, git_path: GitPath) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        admission = self.fake.admit(method, path, query, headers, None, git=True)
        finished = False

        def finish(status: int) -> None:
            nonlocal finished
            self.fake.finish(admission.seq, status)
            finished = True

        try:
            self._reply_git(admission, method, query, git_path, headers, finish)
        except (ClientGone, OSError):
            self.close_connection = True
        finally:
            if not finished:
                self.fake.finish(admission.seq, None)

    def _reply_git(
        self,
        admission: Admission,
        method: str,
        query: str,
        git_path: GitPath,
        headers: dict[str, str],
        finish: Callable[[int], None],
    ) -> None:
        if not admission.authorized:
            # git sends credentials only once asked with a Basic challenge.
            challenge = {"www-authenticate": 'Basic realm="GitHub"'}
            self._refuse_git(401, GIT_AUTH_FAILED, finish, challenge)
            return
        fault = admission.fault
        if fault is not None and (fault.delay_s or fault.hang):
            seconds = None if fault.hang else fault.delay_s
            self.pause(seconds, released=self.fake.released, closing=self.fake.closing)
        if fault is not None and fault.status is not None:
            phrase = error_body(fault.status)["message"]
            text = fault.body if isinstance(fault.body, str) else phrase
            self._refuse_git(fault.status, text, finish, fault.headers)
            return
        repositories = self.fake.repositories
        info = repositories.find(git_path.full_name)
        if info is None:
            self._refuse_git(404, "Repository not found.\n", finish)
            return
        request = BackendRequest(
            method, repositories.root, info.path, git_path.service, query, headers, admission.user
        )
        run_http_backend(self, request, extra_headers=admission.headers, finish=finish)

    def _refuse_git(
        self,
        status: int,
        text: str,
        finish: Callable[[int], None],
        headers: dict[str, str] | None = None,
    ) -> None:
        extra = dict(headers or {})
        if self.command == "POST":
            extra["connection"] = "close"  # its body was never read
        finish(status)
        self.send_bytes(status, text.encode(), content_type=TEXT_TYPE, headers=extra)

    # --- the control API ------------------------------------------------------------------

    def _answer_control(
        self, method: str, path: str, query: dict[str, list[str]], raw: bytes
    ) -> None:
        route = _CONTROL_ROUTES.get((method, path))
        if route is None:
            self.send_json(404, {"error": f"no control route {method} {path}"})
            return
        try:
            payload = json.loads(raw) if raw.strip() else {}
            status, result = route(self.fake, {k: v[0] for k, v in query.items()}, payload)
        except ValueError as exc:  # bad JSON, ControlInputError, or a role the fake refuses
            status, result = 400, {"error": str(exc)}
        except LookupError as exc:  # UnknownRepository
            status, result = 404, {"error": str(exc)}
        except GitCommandError as exc:
            status, result = 500, {"error": str(exc)}
        self.send_json(status, result)


ControlRoute = Callable[["FakeGitHub", dict[str, str], Any], tuple[int, Any]]
OK: tuple[int, Any] = (200, {"ok": True})


def _field(payload: Any, name: str, kind: type) -> Any:
    value = payload.get(name) if isinstance(payload, dict) else None
    # bool is an int to isinstance, but never a valid issue number.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ControlInputError(f"{name!r} must be a {kind.__name__}, got {value!r}")
    return value


def _optional(payload: Any, name: str, kind: type, default: Any) -> Any:
    value = payload.get(name) if isinstance(payload, dict) else None
    return default if value is None else _field(payload, name, kind)


def _param(query: dict[str, str], name: str) -> str:
    if name not in query:
        raise ControlInputError(f"query parameter {name!r} is missing")
    return query[name]


def _files(payload: Any, *, deletions: bool) -> dict[str, Any]:
    files = _field(payload, "files", dict)
    allowed = str | None if deletions else str
    if not all(isinstance(k, str) and isinstance(v, allowed) for k, v in files.items()):
        raise ControlInputError(f"'files' maps paths to text (null deletes: {deletions})")
    return files


def _set_permission(fake: FakeGitHub, _query: dict[str, str], payload: Any) -> tuple[int, Any]:
    permission = payload.get("permission") if isinstance(payload, dict) else None
    if permission is not None and not isinstance(permission, str):
        raise ControlInputError(f"'permission' must be a string or null, got {permission!r}")
    fake.set_permission(_field(payload, "repo", str), _field(payload, "user", str), permission)
    return OK


def _script_fault(fake: FakeGitHub, _query: dict[str, str], payload: Any) -> tuple[int, Any]:
    fake.script(Fault.from_dict(payload))
    return OK


def _add_review_comment(fake: FakeGitHub, _query: dict[str, str], payload: Any) -> tuple[int, Any]:
    comment = fake.add_review_comment(
        _field(payload, "repo", str),
        _field(payload, "number", int),
        user=_field(payload, "user", str),
        body=_field(payload, "body", str),
    )
    return 201, comment


def _comments(fake: FakeGitHub, query: dict[str, str], _payload: Any) -> tuple[int, Any]:
    number = int(query["number"]) if "number" in query else None
    kind = query.get("kind")
    if kind not in (None, "issue", "review"):
        raise ControlInputError(f"kind must be issue or review, not {kind!r}")
    return 200, fake.comments(query.get("repo"), number, kind=kind)  # type: ignore[arg-type]


def _requests(fake: FakeGitHub, query: dict[str, str], _payload: Any) -> tuple[int, Any]:
    recorded = fake.requests(query.get("method"), query.get("path_prefix"))
    return 200, [r.to_json() for r in recorded]


def _stats(fake: FakeGitHub, _query: dict[str, str], _payload: Any) -> tuple[int, Any]:
    return 200, fake.stats()


def _release(fake: FakeGitHub, _query: dict[str, str], _payload: Any) -> tuple[int, Any]:
    fake.release()
    return OK


def _reset(fake: FakeGitHub, _query: dict[str, str], _payload: Any) -> tuple[int, Any]:
    fake.reset()
    return OK


def _create_repository(fake: FakeGitHub, _query: dict[str, str], payload: Any) -> tuple[int, Any]:
    has_files = isinstance(payload, dict) and payload.get("files") is not None
    fake.create_repository(
        _field(payload, "full_name", str),
        default_branch=_optional(payload, "default_branch", str, "main"),
        files=_files(payload, deletions=False) if has_files else None,
        private=_optional(payload, "private", bool, True),
    )
    return 201, {"ok": True}


def _commit_files(fake: FakeGitHub, _query: dict[str, str], payload: Any) -> tuple[int, Any]:
    sha = fake.commit_files(
        _field(payload, "full_name", str),
        _field(payload, "branch", str),
        _files(payload, deletions=True),
        _field(payload, "message", str),
        author=_optional(payload, "author", str, SOMEONE),
    )
    return 201, {"sha": sha}


def _branch_sha(fake: FakeGitHub, query: dict[str, str], _payload: Any) -> tuple[int, Any]:
    return 200, {"sha": fake.branch_sha(_param(query, "repo"), _param(query, "branch"))}


def _log(fake: FakeGitHub, query: dict[str, str], _payload: Any) -> tuple[int, Any]:
    return 200, fake.log(_param(query, "repo"), _param(query, "branch"))


def _read_file(fake: FakeGitHub, query: dict[str, str], _payload: Any) -> tuple[int, Any]:
    path = _param(query, "path")
    return 200, {"content": fake.read_file(_param(query, "repo"), _param(query, "branch"), path)}


def _repo_path(fake: FakeGitHub, query: dict[str, str], _payload: Any) -> tuple[int, Any]:
    return 200, {"path": str(fake.repo_path(_param(query, "repo")))}


def _add_pull_request(fake: FakeGitHub, _query: dict[str, str], payload: Any) -> tuple[int, Any]:
    pull = fake.add_pull_request(
        _field(payload, "full_name", str),
        number=_optional(payload, "number", int, None),
        head_ref=_field(payload, "head_ref", str),
        base=_optional(payload, "base", str, "main"),
        head_repo=_optional(payload, "head_repo", str, None),
        title=_optional(payload, "title", str, "A pull request"),
        body=_optional(payload, "body", str, None),
        draft=_optional(payload, "draft", bool, False),
        user=_optional(payload, "user", str, None),
    )
    return 201, pull


def _pulls(fake: FakeGitHub, query: dict[str, str], _payload: Any) -> tuple[int, Any]:
    return 200, fake.pulls(_param(query, "repo"))


_CONTROL_ROUTES: dict[tuple[str, str], ControlRoute] = {
    ("POST", "/_fake/permissions"): _set_permission,
    ("POST", "/_fake/faults"): _script_fault,
    ("POST", "/_fake/review-comments"): _add_review_comment,
    ("GET", "/_fake/comments"): _comments,
    ("GET", "/_fake/requests"): _requests,
    ("GET", "/_fake/stats"): _stats,
    ("POST", "/_fake/release"): _release,
    ("POST", "/_fake/reset"): _reset,
    ("POST", "/_fake/repos"): _create_repository,
    ("POST", "/_fake/repos/commits"): _commit_files,
    ("GET", "/_fake/repos/branch"): _branch_sha,
    ("GET", "/_fake/repos/log"): _log,
    ("GET", "/_fake/repos/file"): _read_file,
    ("GET", "/_fake/repos/path"): _repo_path,
    ("POST", "/_fake/pulls"): _add_pull_request,
    ("GET", "/_fake/pulls"): _pulls,
}


def _json_or_none(raw: bytes) -> Any:
    """The body as recorded: parsed JSON, or None when empty or not JSON."""
    try:
        return json.loads(raw) if raw.strip() else None
    except ValueError:
        return None
