"""The model API circuit breaker: an outage holds queued tasks back, keeping their
attempts, instead of burning them into dead letters."""

from __future__ import annotations

import pytest
from django.test import Client

from tasks_app.models import DeadLetter, Source, TaskStatus
from tasks_app.services import model_breaker
from tasks_app.services.tasks import task_create
from tests.engine import celery_worker, engine_env, wait_until_finished
from tests.fakes.anthropic_api import Error
from tests.live import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
OUTAGE_S = 30
TASKS = 20


def test_a_529_outage_holds_20_tasks_back_and_none_becomes_a_dead_letter(
    fake_model, owner, workspace_root
):
    fake_model.outage(Error(529, "overloaded_error", "Overloaded"), for_s=OUTAGE_S)
    env = engine_env(
        fake_model.base_url, workspace_root,
        AGENT_MODEL_BREAKER_COOLDOWN_S="5", AGENT_MAX_RUNNING_PER_USER="4",
        AGENT_MAX_QUEUED_PER_USER="100",
    )  # fmt: skip
    with celery_worker(env, concurrency=4):
        tasks = [
            task_create(owner=owner, prompt=f"[outage{i}] hello", source=Source.API)
            for i in range(TASKS)
        ]
        wait_until(lambda: not model_breaker.state().closed, 60, "the breaker to open")
        # While it is open, the service says so (and stays ready).
        client = Client()
        client.force_login(owner)
        assert "Model API degraded since" in client.get("/").content.decode()
        readyz = client.get("/readyz")
        assert readyz.status_code == 200
        assert "model API degraded since" in readyz.json()["checks"]["model_api"]["detail"]
        finished = wait_until_finished([t.pk for t in tasks], timeout_s=240)
    assert [t.status for t in finished] == [TaskStatus.SUCCEEDED] * TASKS, [
        (t.status, t.error) for t in finished
    ]
    assert DeadLetter.objects.count() == 0
    # Attempts counted against each task's budget (a hand-back gives its attempt back).
    counted = [t.attempts - (t.max_attempts - 3) for t in finished]
    assert max(counted) <= 2, counted
    assert model_breaker.state().closed
    failed = [r for r in fake_model.requests() if isinstance(r.step, Error)]
    print(
        f"\n{TASKS} tasks through a {OUTAGE_S} s outage: {len(failed)} requests met the "
        f"outage, attempts counted {sorted(counted)}, starts "
        f"{sorted(t.attempts for t in finished)}"
    )
