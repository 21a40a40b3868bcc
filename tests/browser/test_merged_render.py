"""A task page renders merged text deltas exactly as it renders the deltas one by one:
on what the real CLI printed for a scripted conversation, and on generated streams; and
a block shown live as previews ends exactly as its stored event renders alone."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from cli_exec.claude import ClaudeOptions, build_argv, build_env, secret_values
from cli_exec.runner import CliCommand, RunLimits
from tasks_app.models import Task, TaskStatus
from tasks_app.services import broadcast
from tasks_app.services.coalescing import coalesced, is_text_delta
from tasks_app.services.events import NewEvent, append_events
from tasks_app.services.lifecycle import claim_task, transition
from tests.browser.pages import UI_MS, log_in_as, make_browser_user
from tests.cli_exec.conftest import collect
from tests.engine import CLAUDE
from tests.factories import make_task
from tests.fakes.anthropic_api import Text, ToolUse
from tests.tasks_app.test_coalescing import generated

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
]
REPLY = "Here is what I found: " + " ".join(f"item{i}" for i in range(60)) + "."


def recorded_cli_events(fake_model, workspace: Path) -> list[NewEvent]:
    """The events the real CLI's output parses into, one per line, in order."""
    fake_model.script(
        "[render]",
        ToolUse("Bash", {"command": "echo looked", "description": "look"}, text="Let me look."),
        Text(REPLY, chunk_chars=3),
    )
    config = workspace / ".config"
    config.mkdir(parents=True)
    env = build_env(
        config_dir=config,
        path="/usr/bin:/bin",
        api_key="sk-ant-test-0123456789abcdef",
        base_url=fake_model.base_url,
        oauth_token=None,
        max_api_retries=1,
    )
    options = ClaudeOptions(cli=str(CLAUDE), max_turns=3, allowed_tools=("Bash",))
    command = CliCommand(
        argv=build_argv(options),
        cwd=workspace,
        env=env,
        stdin=b"[render] look around",
        secrets=secret_values(env),
    )
    run = collect(command, RunLimits(wall_timeout_s=60, idle_timeout_s=60))
    events = [NewEvent(e.kind.value, e.payload) for batch in run.batches for e in batch]
    assert sum(1 for e in events if e.kind == "text" and e.payload["partial"]) > 40
    return events


def stored_task(owner: Any, events: list[NewEvent]) -> Task:
    """A finished task whose stream is `events`, one row each."""
    task = make_task(owner)
    assert claim_task(task, worker="test-worker")
    append_events(task, events, attempt=task.attempts, running_attempt=task.attempts)
    assert transition(task, to=TaskStatus.SUCCEEDED, from_statuses=[TaskStatus.RUNNING])
    return task


def rendered(page: Page, task: Task) -> list[dict[str, str]]:
    """Every entry of the task page's stream: its kind, test id, classes and text."""
    page.goto(f"/tasks/{task.pk}/")
    # The whole stream was replayed once the socket reports the task's end.
    state = page.get_by_test_id("connection-state")
    expect(state).to_have_attribute("data-state", "finished", timeout=UI_MS)
    return entries(page)


def entries(page: Page) -> list[dict[str, str]]:
    return page.get_by_test_id("stream").evaluate(
        """stream => Array.from(stream.children).map(entry => ({
            kind: entry.dataset.kind || "",
            testid: entry.dataset.testid || "",
            classes: entry.className,
            text: entry.innerText,
        }))"""
    )


def assert_renders_alike(page: Page, owner: Any, raw: list[NewEvent]) -> None:
    merged = coalesced(raw)
    one_by_one, at_once = stored_task(owner, raw), stored_task(owner, merged)
    assert rendered(page, at_once) == rendered(page, one_by_one)


def test_merged_deltas_render_as_the_deltas_did(page, web, fake_model, tmp_path):
    owner = make_browser_user("alice")
    log_in_as(page, owner)
    recorded = recorded_cli_events(fake_model, tmp_path / "ws")
    assert len(coalesced(recorded)) < len(recorded) / 5
    assert_renders_alike(page, owner, recorded)
    for seed in range(4):
        rng = random.Random(seed)
        assert_renders_alike(page, owner, generated(rng, rng.randint(20, 80)))


def wait_for_last_seq(page: Page, seq: int) -> None:
    page.wait_for_function(
        "seq => document.querySelector('[data-task-page]').dataset.lastSeq === String(seq)",
        arg=seq,
        timeout=UI_MS,
    )


def stream_length(page: Page) -> int:
    return page.get_by_test_id("stream").evaluate("stream => stream.textContent.length")


def test_previews_of_a_block_end_as_its_stored_event_renders_alone(page, web):
    owner = make_browser_user("alice")
    log_in_as(page, owner)
    rng = random.Random(7)
    events = coalesced(generated(rng, 80))
    task = make_task(owner)
    assert claim_task(task, worker="test-worker")
    page.goto(f"/tasks/{task.pk}/")
    wait_for_last_seq(page, 1)  # the running status
    previewed = 0
    for seq, event in enumerate(events, start=2):
        if is_text_delta(event) and event.payload["text"]:
            text = event.payload["text"]
            shown_before = stream_length(page)
            cuts = sorted(set(rng.choices(range(1, len(text) + 1), k=3)))
            for cut in cuts:
                payload = {**event.payload, "text": text[:cut]}
                broadcast.task_preview(task.pk, after=seq - 1, kind="text", payload=payload)
            # Each preview replaced the one before: the page shows the last one once.
            # In UTF-16 units, as the page counts.
            expected = shown_before + page.evaluate("text => text.length", text[: cuts[-1]])
            page.wait_for_function(
                "n => document.querySelector('[data-testid=stream]').textContent.length === n",
                arg=expected,
                timeout=UI_MS,
            )
            previewed += 1
        append_events(task, [event], attempt=task.attempts, running_attempt=task.attempts)
        wait_for_last_seq(page, seq)
    assert previewed > 10
    assert transition(task, to=TaskStatus.SUCCEEDED, from_statuses=[TaskStatus.RUNNING])
    expect(page.get_by_test_id("connection-state")).to_have_attribute(
        "data-state", "finished", timeout=UI_MS
    )
    seen_live = entries(page)
    assert seen_live == rendered(page, task)
