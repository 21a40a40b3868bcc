"""The real CLI through a real Celery worker against the scripted fake model."""

from decimal import Decimal

import pytest

from tasks_app.models import Source, TaskStatus
from tasks_app.services.tasks import task_create
from tests.engine import wait_for_status
from tests.fakes.anthropic_api import Text, ToolUse

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = TaskStatus


def test_plain_answer_succeeds_with_usage_and_gapless_events(worker, fake_model, owner):
    fake_model.script("[plain]", Text("The answer is 42."))
    task = task_create(owner=owner, prompt="[plain] what is the answer?", source=Source.API)
    task = wait_for_status(task.pk, S.terminal())
    assert task.status == S.SUCCEEDED, task.error
    assert task.result_text == "The answer is 42."
    assert task.attempts == 1 and task.exit_code == 0 and task.num_turns == 1
    assert task.cost_usd > Decimal("0") and task.input_tokens > 0 and task.output_tokens > 0
    assert task.worker == worker.name and task.pid is None
    events = list(task.events.order_by("seq"))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    kinds = [e.kind for e in events]
    assert kinds[:2] == ["status", "status"] and kinds[-2:] == ["result", "status"]
    assert "system" in kinds
    deltas = [e.payload["text"] for e in events if e.kind == "text" and e.payload["partial"]]
    # Streamed as deltas (merged when they come within one flush interval).
    assert "".join(deltas) == "The answer is 42." and deltas
    assert [e.payload["status"] for e in events if e.kind == "status"] == [
        "queued",
        "running",
        "succeeded",
    ]
    task.session.refresh_from_db()
    assert task.session.cli_session_id and task.session.transcript


def test_tool_use_turn_writes_a_file_into_the_session_workspace(
    worker, fake_model, owner, workspace_root
):
    task = task_create(owner=owner, prompt="[write] create hello.txt", source=Source.API)
    target = workspace_root / task.session.workspace / "hello.txt"
    fake_model.script(
        "[write]",
        ToolUse("Write", {"file_path": str(target), "content": "hi from the agent\n"}),
        Text("Created hello.txt."),
    )
    task = wait_for_status(task.pk, S.terminal())
    assert task.status == S.SUCCEEDED, task.error
    assert target.read_text() == "hi from the agent\n"
    tool_use = task.events.get(kind="tool_use")
    assert tool_use.payload["name"] == "Write"
    tool_result = task.events.get(kind="tool_result")
    assert tool_result.payload["tool_use_id"] == tool_use.payload["id"]
    assert not tool_result.payload["is_error"]


def test_follow_up_in_the_same_session_resumes_on_a_fresh_machine(
    worker, fake_model, owner, workspace_root
):
    fake_model.script("[resume]", Text("Noted: the code word is tangerine."), Text("tangerine"))
    first = task_create(owner=owner, prompt="[resume] remember tangerine", source=Source.API)
    first = wait_for_status(first.pk, S.terminal())
    assert first.status == S.SUCCEEDED, first.error
    # Another machine has none of the CLI's local files: the transcript must come from
    # the database.
    config_dir = workspace_root / ".cli-config" / first.session.workspace
    for path in sorted(config_dir.rglob("*"), reverse=True):
        path.unlink() if path.is_file() or path.is_symlink() else path.rmdir()
    follow_up = task_create(
        owner=owner, prompt="what was the code word?", source=Source.API, session=first.session
    )
    follow_up = wait_for_status(follow_up.pk, S.terminal())
    assert follow_up.status == S.SUCCEEDED, follow_up.error
    assert follow_up.result_text == "tangerine"
    resumed = fake_model.requests("[resume]")[-1]
    texts = str(resumed.messages)
    assert "remember tangerine" in texts and "Noted: the code word is tangerine." in texts
    assert "what was the code word?" in texts


def test_max_turns_reached_fails_with_a_sentence(worker, fake_model, owner, workspace_root):
    task = task_create(owner=owner, prompt="[turns] loop forever", source=Source.API, max_turns=1)
    target = workspace_root / task.session.workspace / "a.txt"
    fake_model.script("[turns]", ToolUse("Write", {"file_path": str(target), "content": "x"}))
    task = wait_for_status(task.pk, S.terminal())
    assert task.status == S.FAILED
    assert "limit of 1 turn" in task.error
    assert task.attempts == 1 and task.events.filter(kind="result").count() == 1
