"""HTTP handler of the fake GitHub API: the REST routes of github_state and the control API.

Control API (for a fake running as its own process; no token needed):
  POST /_fake/permissions      {"repo": "o/r", "user": login, "permission": role or null}
  POST /_fake/faults           a fault dict (github_faults.Fault.to_dict)
  POST /_fake/review-comments  {"repo", "number", "user", "body"} -> 201 the review comment
  GET  /_fake/comments[?repo=o/r&number=N&kind=issue|review]  comments with "history"
  GET  /_fake/requests[?method=M&path_prefix=P]  recorded API requests, oldest first
  GET  /_fake/stats            {"in_flight", "total", "faults_pending", "comments"}
  POST /_fake/release          end every delay and hang, now and until reset
  POST /_fake/reset            forget roles, comments, faults and recordings; re-arm delays
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.github_faults import ControlInputError, Fault
from tests.fakes.github_state import ApiReply, error_body
from tests.fakes.http_base import ClientGone, FakeRequestHandler

if TYPE_CHECKING:
    from tests.fakes.github_api import Admission, FakeGitHub

JSON_TYPE = "application/json; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"


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
            reply = self._reply(admission, method, path, raw)
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

    def _reply(self, admission: Admission, method: str, path: str, raw: bytes) -> ApiReply:
        if not admission.authorized:
            return ApiReply(401, error_body(401, "Bad credentials"))
        fault = admission.fault
        if fault is not None and (fault.delay_s or fault.hang):
            seconds = None if fault.hang else fault.delay_s
            self.pause(seconds, released=self.fake.released, closing=self.fake.closing)
        if fault is not None and fault.status is not None:
            body = error_body(fault.status) if fault.body is None else fault.body
            return ApiReply(fault.status, body, fault.headers)
        return self.fake.answer(method, path, raw)

    def _send_reply(self, reply: ApiReply, standard_headers: dict[str, str]) -> None:
        headers = standard_headers | {name.lower(): value for name, value in reply.headers.items()}
        if isinstance(reply.payload, str):
            data = reply.payload.encode()
            self.send_bytes(reply.status, data, content_type=HTML_TYPE, headers=headers)
        else:
            self.send_json(reply.status, reply.payload, headers, content_type=JSON_TYPE)

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
        self.send_json(status, result)


ControlRoute = Callable[["FakeGitHub", dict[str, str], Any], tuple[int, Any]]
OK: tuple[int, Any] = (200, {"ok": True})


def _field(payload: Any, name: str, kind: type) -> Any:
    value = payload.get(name) if isinstance(payload, dict) else None
    # bool is an int to isinstance, but never a valid issue number.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ControlInputError(f"{name!r} must be a {kind.__name__}, got {value!r}")
    return value


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


_CONTROL_ROUTES: dict[tuple[str, str], ControlRoute] = {
    ("POST", "/_fake/permissions"): _set_permission,
    ("POST", "/_fake/faults"): _script_fault,
    ("POST", "/_fake/review-comments"): _add_review_comment,
    ("GET", "/_fake/comments"): _comments,
    ("GET", "/_fake/requests"): _requests,
    ("GET", "/_fake/stats"): _stats,
    ("POST", "/_fake/release"): _release,
    ("POST", "/_fake/reset"): _reset,
}


def _json_or_none(raw: bytes) -> Any:
    """The body as recorded: parsed JSON, or None when empty or not JSON."""
    try:
        return json.loads(raw) if raw.strip() else None
    except ValueError:
        return None
