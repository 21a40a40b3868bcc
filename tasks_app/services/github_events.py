"""Reading GitHub webhook payloads: which events trigger a task, and why others don't.

Pure functions over the parsed payload; the view records what they decide.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from tasks_app import selectors
from tasks_app.models import GitHubRepository

# (event, action) pairs that may start a task, and where their text lives.
TRIGGERS: dict[tuple[str, str], str] = {
    ("issue_comment", "created"): "comment",
    ("issues", "opened"): "issue",
    ("issues", "assigned"): "issue",
    ("pull_request_review_comment", "created"): "comment",
}


@dataclass(frozen=True)
class Trigger:
    """What the job needs to act on a delivery that passed every cheap check."""

    repository: GitHubRepository
    number: int
    title: str
    text: str
    author: str
    html_url: str
    is_pull_request: bool
    review_comment_id: int | None


class NotATrigger(Exception):
    """A delivery we record and ignore; the message is the recorded reason."""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def trigger_phrase_pattern(phrase: str) -> re.Pattern[str]:
    # A mention, not a prefix of a longer name: "@claude" must not match "@claudette".
    return re.compile(rf"(?<![\w@-]){re.escape(phrase)}(?![\w-])", re.IGNORECASE)


def _author_refusal(user: dict[str, Any], sender: dict[str, Any]) -> str | None:
    own = settings.AGENT_GITHUB_BOT_LOGIN.lower()
    for who in (user, sender):
        login = str(who.get("login", ""))
        if own and login.lower() == own:
            return "own comment"
        if who.get("type") != "User" or login.endswith("[bot]"):
            return f"author {login or '?'} is not a user ({who.get('type', 'unknown type')})"
    return None


def _registered(full_name: str) -> GitHubRepository:
    repository = selectors.repository_by_name(full_name)
    if repository is None:
        raise NotATrigger("repository not registered")
    if not repository.enabled:
        raise NotATrigger("repository disabled")
    return repository


def classify(event: str, payload: dict[str, Any]) -> Trigger:
    """The trigger in `payload`, or NotATrigger with the reason it is ignored."""
    action = str(payload.get("action", ""))
    where = TRIGGERS.get((event, action))
    if where is None:
        raise NotATrigger(f"{event}.{action or '-'} does not start tasks")
    issue = _dict(payload.get("issue")) or _dict(payload.get("pull_request"))
    item = _dict(payload.get(where)) if where == "comment" else issue
    repository = _registered(str(_dict(payload.get("repository")).get("full_name", "")))
    refusal = _author_refusal(_dict(item.get("user")), _dict(payload.get("sender")))
    if refusal:
        raise NotATrigger(refusal)
    text = item.get("body") or ""
    if not isinstance(text, str):
        raise NotATrigger("no text")
    if len(text.encode("utf-8")) > settings.GITHUB_COMMENT_MAX_BYTES:
        raise NotATrigger("comment over 10 KB")
    phrase = repository.trigger or settings.AGENT_GITHUB_TRIGGER
    if not trigger_phrase_pattern(phrase).search(text):
        raise NotATrigger("no trigger phrase")
    number = issue.get("number")
    if not isinstance(number, int) or number <= 0:
        raise NotATrigger("no issue or pull request number")
    return Trigger(
        repository=repository,
        number=number,
        title=str(issue.get("title", ""))[:300],
        text=text,
        author=str(_dict(payload.get("sender")).get("login", "")),
        html_url=str(item.get("html_url", issue.get("html_url", ""))),
        is_pull_request="pull_request" in payload or "pull_request" in issue,
        review_comment_id=_dict(payload.get("comment")).get("id")
        if event == "pull_request_review_comment"
        else None,
    )
