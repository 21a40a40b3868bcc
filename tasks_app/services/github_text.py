"""Text that crosses between GitHub and the agent: sanitized prompts and our comments."""

from __future__ import annotations

import re

from django.conf import settings

from tasks_app.models import Task, TaskStatus
from tasks_app.services.github_events import Trigger, trigger_phrase_pattern

# Characters that render as nothing (or reorder text) and can hide instructions from a
# human reviewer: zero-width and bidi controls, tag characters, variation selectors.
INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e007f]"
)
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")
HTML_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
SUMMARY_CHARS = 1500


def sanitize(text: str, trigger_phrase: str) -> str:
    """What a reader of the thread sees, minus the trigger: the only text we pass on."""
    text = HTML_COMMENT.sub("", text)
    text = INVISIBLE.sub("", text)
    text = CONTROL.sub("", text.replace("\r\n", "\n"))
    text = trigger_phrase_pattern(trigger_phrase).sub("", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def build_prompt(trigger: Trigger) -> str:
    phrase = trigger.repository.trigger or settings.AGENT_GITHUB_TRIGGER
    kind = "pull request" if trigger.is_pull_request else "issue"
    title = sanitize(trigger.title, phrase)
    return (
        f"@{trigger.author} asked for your help on GitHub in {trigger.repository.full_name}, "
        f"{kind} #{trigger.number} ({title!r}).\n\n"
        f"Their request:\n\n{sanitize(trigger.text, phrase)}\n\n"
        f"Thread: {trigger.html_url}"
    )


def task_url(task: Task) -> str:
    return f"{settings.PUBLIC_BASE_URL}/tasks/{task.pk}/"


def ack_body(task: Task) -> str:
    return (
        f"👀 On it: I'm working on this as [task #{task.pk}]({task_url(task)}) "
        "(you can watch it live). I'll update this comment when I'm done."
    )


def rate_limited_body(author: str) -> str:
    return (
        f"Sorry @{author}, I've taken on as many requests here as I'm allowed for now. "
        "Please mention me again a little later."
    )


def refused_body(author: str, reason: str) -> str:
    return f"Sorry @{author}, I can't take this on right now: {reason}"


HEADLINES = {
    TaskStatus.SUCCEEDED: "✅ Done",
    TaskStatus.FAILED: "❌ Failed",
    TaskStatus.TIMED_OUT: "⏱️ Timed out",
    TaskStatus.CANCELLED: "🛑 Cancelled",
    TaskStatus.DEAD_LETTER: "❌ Gave up after repeated errors",
}


def outcome_body(task: Task) -> str:
    headline = HEADLINES.get(TaskStatus(task.status), task.status)
    summary = task.result_text if task.status == TaskStatus.SUCCEEDED else task.error
    summary = summary.strip() or "(no summary)"
    if len(summary) > SUMMARY_CHARS:
        summary = summary[:SUMMARY_CHARS].rstrip() + " …"
    quoted = "\n".join(f"> {line}" for line in summary.splitlines())
    facts = [f"[task #{task.pk}]({task_url(task)})"]
    if task.cost_usd is not None:
        facts.append(f"cost ${task.cost_usd:.4f}")
    if task.duration_ms is not None:
        facts.append(f"{task.duration_ms / 1000:.1f} s")
    if task.num_turns is not None:
        facts.append(f"{task.num_turns} turn{'s' if task.num_turns != 1 else ''}")
    parts = [headline, quoted, " · ".join(facts)]
    work = work_line(task)
    if work:
        parts.append(work)
    if task.workspace_note:
        parts.append(f"ℹ️ {task.workspace_note}")
    return "\n\n".join(parts)


def work_line(task: Task) -> str:
    """What the attempt changed and where it went: the pull request, else the branch."""
    if not task.files_changed:
        return ""
    files = f"{task.files_changed} file{'s' if task.files_changed != 1 else ''} changed"
    stat = f"{files} (+{task.insertions or 0} −{task.deletions or 0})"
    if task.pull_request_url:
        return f"{stat} · [pull request]({task.pull_request_url})"
    if task.branch and task.head_commit and task.session.github_repository_id:
        return f"{stat} · branch `{task.branch}`"
    return f"{stat} · [diff]({task_url(task)})"
