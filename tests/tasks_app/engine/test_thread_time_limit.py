"""A threads worker keeps Celery's hard time limit: a job past it unwinds and frees its slot."""

import pytest

from agentsite.celery import app as celery_app
from tasks_app.models import Source, TaskStatus
from tasks_app.services.dispatch import AGENT_QUEUE, RUN_NEXT_TASK
from tasks_app.services.tasks import task_create
from tests.engine import celery_worker, engine_env, wait_for_status
from tests.factories import make_task
from tests.fakes.anthropic_api import Hang, Text
from tests.live import wait_until
from tests.tasks_app.engine.processes import process_gone, worker_processes
from tests.tasks_app.engine.test_control import running_cli_pid

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = TaskStatus


def test_threads_worker_interrupts_a_job_past_its_hard_limit_and_runs_the_next(
    fake_model, owner, workspace_root
):
    fake_model.script("[stuck]", Hang())
    fake_model.script("[next]", Text("after the stuck one"))
    env = engine_env(fake_model.base_url, workspace_root, AGENT_WORKER_POOL="threads")
    with celery_worker(env, concurrency=1) as live:
        # Written directly, so that the only wake-up is this one, with a 3 s hard limit
        # (Celery's prefork pool would kill its process at that point).
        stuck = make_task(owner, prompt="[stuck] wait for ever")
        celery_app.send_task(RUN_NEXT_TASK, queue=AGENT_QUEUE, time_limit=3)
        cli = running_cli_pid(stuck.pk)
        wait_until(lambda: "job_time_limit_exceeded" in live.log(), 30, "the limit to act")
        # The job unwound: its CLI is stopped and reaped, and the slot takes the next task.
        wait_until(lambda: process_gone(cli), 15, "the stuck job's CLI to be gone")
        following = task_create(owner=owner, prompt="[next] go", source=Source.API)
        following = wait_for_status(following.pk, S.terminal())
        assert live.process.poll() is None
        assert worker_processes(live.process.pid) == [live.process.pid]
    assert following.status == S.SUCCEEDED
    assert "worker_ended_for_stuck_job" not in live.log()
    # Its heartbeat stopped with it: beat's reaper takes it from here, as after a kill.
    stuck.refresh_from_db()
    assert stuck.status == S.RUNNING
