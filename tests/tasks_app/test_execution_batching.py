"""The execution service with a fast-talking scripted CLI, in process (no Celery).

The attempt's events are written from the process's run hub, a thread of its own with
its own database connection: the tests commit what they set up (transaction=True)."""

import sys
import textwrap
from unittest import mock

import pytest
from django.test import override_settings

from tasks_app.models import Task, TaskStatus
from tasks_app.services import broadcast, event_writer
from tasks_app.services.execution import execute_claimed_task
from tasks_app.services.lifecycle import claim_task
from tests.factories import make_task

pytestmark = pytest.mark.django_db(transaction=True)

LINES = 3000


def scripted_cli(session_id: str, body: str) -> str:
    """A CLI for the host's interpreter: its init line, `body` (Python, where `delta(text)`
    makes a text delta's line), its result line."""
    return f"""\
#!{sys.executable}
import json, sys, time
def delta(text):
    event = {{"type": "content_block_delta", "index": 0,
             "delta": {{"type": "text_delta", "text": text}}}}
    return json.dumps({{"type": "stream_event", "event": event}})
sys.stdin.read()
print(json.dumps({{"type": "system", "subtype": "init", "session_id": "{session_id}"}}), flush=True)
{textwrap.dedent(body).strip()}
print(json.dumps({{"type": "result", "subtype": "success", "is_error": False,
                  "result": "done", "session_id": "{session_id}", "num_turns": 1,
                  "total_cost_usd": 0.01, "duration_ms": 5, "usage": {{}}}}))
"""


def claimed_with_cli(user, tmp_path, script: str) -> tuple[Task, dict]:
    """A claimed task, and the settings that run its attempt with `script` as the CLI.
    The script is for the host's interpreter: these tests measure the event writer, not
    the sandbox (which tests/tasks_app/engine/test_sandbox.py covers)."""
    cli = tmp_path / "scripted-claude"
    cli.write_text(script)
    cli.chmod(0o755)
    task = make_task(user)
    assert claim_task(task, worker="test-worker")
    return task, {
        "AGENT_CLI": str(cli),
        "AGENT_WORKSPACE_ROOT": tmp_path / "ws",
        "AGENT_SANDBOX": "off",
    }


CHATTY_CLI = scripted_cli(
    "s-1",
    f"""
    for i in range({LINES}):
        print(delta(f"{{i}} "))
    """,
)


def test_fast_cli_output_is_stored_in_batches_not_a_round_trip_per_line(user, tmp_path):
    task, cli_settings = claimed_with_cli(user, tmp_path, CHATTY_CLI)
    # One INSERT per call (up to MAX_EVENTS_PER_INSERT events).
    counted = mock.patch.object(event_writer, "append_events", wraps=event_writer.append_events)
    with override_settings(**cli_settings), counted as inserts:
        status = execute_claimed_task(task)
    assert status == TaskStatus.SUCCEEDED
    texts = list(task.events.filter(kind="text").order_by("seq").values_list("payload", flat=True))
    # Consecutive deltas of one message are stored merged: the text, in order, is all there.
    assert "".join(t["text"] for t in texts) == "".join(f"{i} " for i in range(LINES))
    print(f"\n{LINES} deltas stored as {len(texts)} text events")
    assert all(t["partial"] for t in texts) and len(texts) <= LINES / 20
    seqs = list(task.events.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    print(f"\n{LINES} lines stored with {inserts.call_count} inserts")
    assert 0 < inserts.call_count <= LINES / 20


PACED_CLI = scripted_cli(
    "s-2",
    """
    for i in range(20):
        print(delta(f"{i} "), flush=True)
        time.sleep(0.02)
    """,
)


def run_paced(user, tmp_path, flush_ms: int, hold_ms: int = 0) -> list[dict]:
    task, cli_settings = claimed_with_cli(user, tmp_path, PACED_CLI)
    with override_settings(
        **cli_settings,
        AGENT_STREAM_FLUSH_MS=flush_ms,
        AGENT_STREAM_DELTA_HOLD_MS=hold_ms,
    ):
        assert execute_claimed_task(task) == TaskStatus.SUCCEEDED
    seqs = list(task.events.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    return list(task.events.filter(kind="text").order_by("seq").values_list("payload", flat=True))


def test_deltas_written_within_one_flush_interval_become_one_stored_event(user, tmp_path):
    texts = run_paced(user, tmp_path, flush_ms=60_000)
    # The first flush goes at once (with whatever the first read of the pipe held); all
    # that comes within the next minute waits for one more.
    assert "".join(t["text"] for t in texts) == "".join(f"{i} " for i in range(20))
    assert len(texts) <= 2 and texts[-1]["text"].endswith("17 18 19 ")


def test_with_no_flush_interval_each_read_of_the_pipe_is_stored_as_it_comes(user, tmp_path):
    texts = run_paced(user, tmp_path, flush_ms=0)
    assert "".join(t["text"] for t in texts) == "".join(f"{i} " for i in range(20))
    assert len(texts) > 1


def test_the_block_being_written_is_previewed_as_it_grows_and_stored_once(user, tmp_path):
    with mock.patch.object(broadcast, "task_preview", wraps=broadcast.task_preview) as pushed:
        texts = run_paced(user, tmp_path, flush_ms=50, hold_ms=60_000)
    whole = "".join(f"{i} " for i in range(20))
    assert [t["text"] for t in texts] == [whole]
    previews = [c.kwargs for c in pushed.call_args_list]
    shown = [p["payload"]["text"] for p in previews]
    print(f"\n20 deltas over 0.4 s: {len(previews)} previews, 1 stored event")
    # Every read of the pipe (at most one per AGENT_STREAM_PREVIEW_MS) is shown at once:
    # the merged text so far, each longer than the last, after the same stored event.
    assert len(previews) >= 5
    assert all(a != b and b.startswith(a) for a, b in zip(shown, shown[1:], strict=False))
    assert all(whole.startswith(text) for text in shown)
    task_id = pushed.call_args.args[0]
    text_seq = Task.objects.get(pk=task_id).events.get(kind="text").seq
    assert {p["after"] for p in previews} == {text_seq - 1}
    assert all(p["kind"] == "text" and p["payload"]["partial"] is True for p in previews)


OVERSIZED_LINE_CLI = scripted_cli("s-3", 'print(delta("y" * (17 * 1024 * 1024)))')


def test_a_line_over_the_limit_is_stored_as_its_head_and_the_run_goes_on(user, tmp_path):
    task, cli_settings = claimed_with_cli(user, tmp_path, OVERSIZED_LINE_CLI)
    with override_settings(**cli_settings):
        assert execute_claimed_task(task) == TaskStatus.SUCCEEDED
    # A 17 MiB line over the 16 MiB limit: the stored event (what watchers get) is its
    # 64 KiB head, and the lines after it still count.
    raw = task.events.get(kind="raw").payload
    assert raw["error"] == "line too long" and raw["truncated"] is True
    assert raw["text"].startswith('{"type": "stream_event"') and len(raw["text"]) == 65_536
    assert task.events.filter(kind="result").exists()
