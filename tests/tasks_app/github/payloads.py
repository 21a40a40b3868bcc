"""Signed GitHub webhook requests for tests and benchmarks."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

SECRET = "whsec-test-3f9a1c7d2e"
REPO = "acme/widgets"


def user(login: str = "alice", kind: str = "User") -> dict[str, Any]:
    return {"login": login, "id": abs(hash(login)) % 10**6, "type": kind}


def issue_comment(
    body: str = "@claude please fix the failing test",
    *,
    number: int = 7,
    repo: str = REPO,
    author: str = "alice",
    author_type: str = "User",
    action: str = "created",
    pull_request: bool = False,
) -> dict[str, Any]:
    issue: dict[str, Any] = {
        "number": number,
        "title": "Tests fail on main",
        "html_url": f"https://github.com/{repo}/issues/{number}",
        "user": user("reporter"),
    }
    if pull_request:
        issue["pull_request"] = {"url": f"https://api.github.com/repos/{repo}/pulls/{number}"}
    return {
        "action": action,
        "issue": issue,
        "comment": {
            "id": 1000 + number,
            "body": body,
            "user": user(author, author_type),
            "html_url": f"https://github.com/{repo}/issues/{number}#issuecomment-1",
        },
        "repository": {"full_name": repo},
        "sender": user(author, author_type),
    }


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def headers(
    body: bytes, *, event: str = "issue_comment", delivery: str | None = None, secret: str = SECRET
) -> dict[str, str]:
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body, secret),
        "Content-Type": "application/json",
    }


def encode(payload: Any) -> bytes:
    return json.dumps(payload).encode()
