"""Cancel, timeouts, duplicate messages, priorities, budgets and the CLI readiness gate."""

import os
from decimal import Decimal

import pytest
from django.test import override_settings

from agentsite.celery import app as celery_app
from tasks_app.models import Source, Task, TaskStatus
from tasks_app.services import dispatch
from tasks_app.services.errors import QuotaExceeded
from tasks_app.services.tasks import task_cancel, task_create
from tests.conftest import token_client
from tests.engine import CLAUDE, celery_worker, engine_env, wait_for_status
from tests.fakes.anthropic_api import Hang, Text
from tests.live import wait_until
from tests.tasks_app.engine.processes import process_gone

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = TaskStatus


def running_cli_pid(task_id: int) -> int:
    return wait_until(
        lambda: (
            Task.objects.filter(pk=task_id, status=S.RUNNING, pid__isnull=False)
            .values_list("pid", flat=True)
            .first()
        ),
        30,
        "the CLI to start",
    )


def test_cancel_of_a_running_task_stops_its_cli_and_marks_it_cancelled(worker, fake_model, owner):
    fake_model.script("[hang]", Hang())
    task = task_create(owner=owner, prompt="[hang] wait forever", source=Source.API)
    pid = running_cli_pid(task.pk)
    wait_until(lambda: fake_model.in_flight == 1, 30, "the model request")
    response = token_client(owner).post(f"/api/tasks/{task.pk}/cancel/")
    assert response.status_code == 202
    task = wait_for_status(task.pk, [S.CANCELLED], timeout_s=5)
    assert process_gone(pid)
    assert task.attempts == 1


def test_silent_cli_is_stopped_by_the_idle_timeout(fake_model, owner, workspace_root):
    fake_model.script("[silent]", Hang())
    env = engine_env(fake_model.base_url, workspace_root, AGENT_IDLE_TIMEOUT_S="2")
    with celery_worker(env, concurrency=1):
        task = task_create(owner=owner, prompt="[silent] hi", source=Source.API)
        task = wait_for_status(task.pk, S.terminal())
    assert task.status == S.TIMED_OUT
    assert "printed nothing for 2 s" in task.error and task.attempts == 1


def test_duplicate_wakeups_never_run_a_task_twice(worker, fake_model, owner):
    fake_model.script("[once]", Text("only once", delay_s=0.05))
    task = task_create(owner=owner, prompt="[once] hi", source=Source.API)
    for _ in range(5):
        dispatch.publish_wakeup()
    task = wait_for_status(task.pk, S.terminal())
    assert task.status == S.SUCCEEDED and task.attempts == 1
    assert len(fake_model.requests("[once]")) == 1
    assert task.events.filter(kind="result").count() == 1


def test_higher_priority_starts_before_older_tasks_on_a_saturated_worker(
    fake_model, owner, workspace_root
):
    fake_model.script("[blocker]", Hang())
    env = engine_env(fake_model.base_url, workspace_root)
    with celery_worker(env, concurrency=1):
        blocker = task_create(owner=owner, prompt="[blocker]", source=Source.API)
        running_cli_pid(blocker.pk)
        low = [task_create(owner=owner, prompt=f"low {i}", source=Source.API) for i in range(2)]
        high = task_create(owner=owner, prompt="urgent", source=Source.API, priority=5)
        task_cancel(task=blocker)
        wait_until(
            lambda: (
                Task.objects.filter(pk__in=[t.pk for t in [*low, high]], status=S.SUCCEEDED).count()
                == 3
            ),
            60,
            "the queued tasks",
        )
    started = sorted([*low, high], key=lambda t: Task.objects.get(pk=t.pk).started_at)
    assert [t.pk for t in started] == [high.pk, low[0].pk, low[1].pk]


def test_daily_budget_caps_each_run_and_then_refuses_new_tasks(fake_model, owner, workspace_root):
    budget = "0.15"
    env = engine_env(fake_model.base_url, workspace_root, AGENT_USER_DAILY_BUDGET_USD=budget)
    fake_model.script("[spend]", Text("first"), Text("second"))
    with override_settings(AGENT_USER_DAILY_BUDGET_USD=Decimal(budget)), celery_worker(env):
        first = task_create(owner=owner, prompt="[spend] one", source=Source.API)
        first = wait_for_status(first.pk, S.terminal())
        assert first.status == S.SUCCEEDED and first.cost_usd < Decimal(budget)
        # The second run gets only what is left as --max-budget-usd, and overruns it.
        second = task_create(owner=owner, prompt="[spend] two", source=Source.API)
        second = wait_for_status(second.pk, S.terminal())
        assert second.status == S.FAILED and "budget" in second.error
        response = token_client(owner).post("/api/tasks/", {"prompt": "three"}, format="json")
        assert response.status_code == 429
        assert "daily budget" in response.json()["detail"]
        with pytest.raises(QuotaExceeded):
            task_create(owner=owner, prompt="four", source=Source.API)


def test_worker_takes_no_jobs_while_the_cli_does_not_run(
    fake_model, owner, tmp_path, workspace_root
):
    cli = tmp_path / "bin" / "claude"
    env = engine_env(
        fake_model.base_url, workspace_root, AGENT_CLI=str(cli), AGENT_CLI_CHECK_INTERVAL_S="0.5"
    )
    fake_model.script("[gate]", Text("ran"))

    def agent_queue_consumed(name: str) -> bool:
        queues = celery_app.control.inspect([name], timeout=1).active_queues() or {}
        return any(q["name"] == "agent" for q in queues.get(name, []))

    with celery_worker(env, concurrency=1) as live:
        assert not agent_queue_consumed(live.name)
        task = task_create(owner=owner, prompt="[gate] hi", source=Source.API)
        cli.parent.mkdir()
        os.symlink(CLAUDE, cli)
        wait_until(lambda: agent_queue_consumed(live.name), 30, "the agent queue consumer")
        task = wait_for_status(task.pk, S.terminal())
    assert task.status == S.SUCCEEDED, task.error
