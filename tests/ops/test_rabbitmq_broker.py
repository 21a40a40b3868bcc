"""A worker on RabbitMQ (CELERY_BROKER_URL=amqp://...) runs an agent task end to end.

Uses this machine's RabbitMQ on the default vhost. Nothing is purged: the only message
this test publishes is one wake-up, which its own worker consumes.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Iterator

import pytest
from celery import Celery
from django.test import override_settings
from kombu import Connection
from kombu.exceptions import OperationalError

from tasks_app.models import Source, TaskStatus
from tasks_app.services.dispatch import AGENT_QUEUE, RUN_NEXT_TASK
from tasks_app.services.readiness import check_broker
from tasks_app.services.tasks import task_create
from tests.engine import engine_env, sandbox_reachable_dir, wait_for_status
from tests.factories import make_user
from tests.fakes.anthropic_api import FakeAnthropic, Text
from tests.live import ROOT, procfile_argv, wait_until
from tests.ops.conftest import running, unique_name
from tests.rabbitmq import AMQP_URL, rabbitmq_to_ourselves

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def amqp_app() -> Iterator[Celery]:
    """A Celery app that publishes to and controls workers on RabbitMQ."""
    try:
        with Connection(AMQP_URL, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
    except (OSError, OperationalError) as exc:
        pytest.fail(
            f"RabbitMQ does not answer at {AMQP_URL} ({type(exc).__name__}: {exc}); "
            "start it (`rabbitmq-server -detached`) before running tests/ops."
        )
    app = Celery(f"ops-{unique_name('amqp')}", broker=AMQP_URL, set_as_current=False)
    app.conf.broker_connection_retry_on_startup = True
    with rabbitmq_to_ourselves():
        yield app
    app.close()


def agent_queue_length_over_amqp(env: dict[str, str]) -> int:
    """tasks_app.services.maintenance.agent_queue_length(), in a process of its own as beat
    runs it, with the amqp broker in its environment."""
    code = (
        "from tasks_app.services.maintenance import agent_queue_length; print(agent_queue_length())"
    )
    done = subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().splitlines()[-1])


def amqp_worker_answers(app: Celery, name: str) -> bool:
    return bool(app.control.ping(destination=[name], timeout=0.5))


def test_worker_on_rabbitmq_runs_an_agent_task_end_to_end(amqp_app):
    owner = make_user(unique_name("amqp-owner"))
    with FakeAnthropic() as fake_model, sandbox_reachable_dir("amqp") as workspace_root:
        fake_model.script("[amqp]", Text("Delivered by RabbitMQ."))
        env = engine_env(
            fake_model.base_url,
            workspace_root,
            CELERY_BROKER_URL=AMQP_URL,
            AGENT_MAX_CONCURRENCY="1",
        )
        # Its own wake-up goes to the test's Redis broker, which the amqp worker never reads.
        task = task_create(owner=owner, prompt="[amqp] hello", source=Source.API)
        waiting_before = agent_queue_length_over_amqp(env)
        amqp_app.send_task(RUN_NEXT_TASK, queue=AGENT_QUEUE)
        assert agent_queue_length_over_amqp(env) == waiting_before + 1

        name = f"{unique_name('amqp-w')}@localhost"
        argv = [*procfile_argv("worker", env), "-n", name]
        ready = functools.partial(amqp_worker_answers, amqp_app, name)
        with running("amqp-worker", argv, env, ready=ready, stop_grace_s=30) as worker:
            task = wait_for_status(task.pk, TaskStatus.terminal())
            wait_until(
                lambda: agent_queue_length_over_amqp(env) <= waiting_before,
                30,
                "the wake-up to leave RabbitMQ's agent queue",
            )
    assert task.status == TaskStatus.SUCCEEDED, task.error
    assert task.result_text == "Delivered by RabbitMQ."
    assert task.worker == name
    assert "amqp://guest:**@127.0.0.1:5672//" in worker.stdout()


def test_readiness_reports_a_live_rabbitmq_broker(amqp_app):
    with override_settings(CELERY_BROKER_URL=AMQP_URL):
        assert check_broker() == "amqp"
