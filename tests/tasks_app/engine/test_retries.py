"""API errors: transient ones retry with backoff, then succeed or end in a dead letter."""

import pytest

from tasks_app.models import DeadLetter, Source, TaskStatus
from tasks_app.services.dead_letters import requeue
from tasks_app.services.tasks import task_create
from tests.engine import wait_for_status
from tests.fakes.anthropic_api import Error, Text
from tests.live import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = TaskStatus
# With AGENT_CLI_API_RETRIES=1 the CLI makes two requests per attempt.
REQUESTS_PER_ATTEMPT = 2


def attempt_statuses(task) -> list[str]:
    return [e.payload["status"] for e in task.events.filter(kind="status").order_by("seq")]


def test_overloaded_api_is_retried_with_backoff_then_succeeds(worker, fake_model, owner):
    fake_model.script("[flaky]", Error(529), Error(529), Text("Recovered."))
    task = task_create(owner=owner, prompt="[flaky] hello", source=Source.API)
    task = wait_for_status(task.pk, S.terminal())
    assert task.status == S.SUCCEEDED, task.error
    assert task.attempts == 2 and task.result_text == "Recovered."
    assert attempt_statuses(task) == ["queued", "running", "queued", "running", "succeeded"]
    retry_event = task.events.filter(kind="status", payload__status="queued").last()
    assert retry_event.payload["reason"].startswith("retrying in ")
    assert "529" in retry_event.payload["reason"]
    assert task.events.filter(kind="result").count() == 2  # one per attempt, each in its attempt
    assert set(task.events.filter(kind="result").values_list("attempt", flat=True)) == {1, 2}
    assert len(fake_model.requests("[flaky]")) == 3


def test_api_errors_on_every_attempt_end_in_a_stored_dead_letter(worker, fake_model, owner):
    fake_model.script("[down]", *[Error(500)] * (3 * REQUESTS_PER_ATTEMPT))
    task = task_create(owner=owner, prompt="[down] hello", source=Source.API)
    task = wait_for_status(task.pk, S.terminal())
    assert task.status == S.DEAD_LETTER
    assert task.attempts == 3 and "500" in task.error
    dead_letter = wait_until(lambda: DeadLetter.objects.filter(task=task).first(), 30, "record")
    assert dead_letter.job == "tasks_app.run_next_agent_task"
    assert "500" in dead_letter.reason
    retried = requeue(dead_letter)
    assert retried.retry_of_id == task.pk and retried.status == S.QUEUED
    dead_letter.refresh_from_db()
    assert dead_letter.requeued_at is not None and dead_letter.requeued_as_id == retried.pk


def test_rejected_credentials_fail_at_once_without_retry(worker, fake_model, owner):
    fake_model.script("[auth]", Error(401), Error(401), Text("never reached"))
    task = task_create(owner=owner, prompt="[auth] hello", source=Source.API)
    task = wait_for_status(task.pk, S.terminal())
    assert task.status == S.FAILED
    assert task.attempts == 1 and "401" in task.error
    assert not DeadLetter.objects.exists()
