"""Flower, started with the Procfile's command, behind basic auth, watching a real worker."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tasks_app.models import Source, TaskStatus
from tasks_app.services.tasks import task_create
from tests.engine import engine_env, wait_for_status, worker_answers
from tests.factories import make_user
from tests.fakes.anthropic_api import FakeAnthropic, Text
from tests.live import child_env, free_port, procfile_argv, wait_until
from tests.ops.conftest import LoggedProcess, running, unique_name

pytestmark = [pytest.mark.integration, pytest.mark.django_db]
RUN_NEXT = "tasks_app.run_next_agent_task"
USER = "ops"
PASSWORD = secrets.token_urlsafe(12)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def fake_model() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture(scope="module")
def worker(
    django_db_setup: None, fake_model: FakeAnthropic, module_workspace_root: Path
) -> Iterator[LoggedProcess]:
    env = engine_env(fake_model.base_url, module_workspace_root, AGENT_MAX_CONCURRENCY="1")
    name = f"{unique_name('flower-w')}@localhost"
    argv = [*procfile_argv("worker", env), "-n", name]
    with running("flower-worker", argv, env, ready=lambda: worker_answers(name)) as live:
        live.name = name
        yield live


@pytest.fixture(scope="module")
def flower(worker: LoggedProcess) -> Iterator[str]:
    port = free_port()
    env = child_env(
        FLOWER_BASIC_AUTH=f"{USER}:{PASSWORD}", BIND_HOST="127.0.0.1", FLOWER_PORT=str(port)
    )
    url = f"http://127.0.0.1:{port}"
    with running(
        "flower", procfile_argv("flower", env), env, ready=lambda: answers(url + "/healthcheck")
    ):
        yield url


def get(url: str, auth: tuple[str, str] | None = None) -> httpx.Response:
    return httpx.get(url, auth=auth, timeout=10)


def flower_json(url: str) -> Any:
    response = get(url, auth=(USER, PASSWORD))
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("path", ["/", "/api/workers", "/api/tasks"])
@pytest.mark.parametrize("auth", [None, (USER, "wrong-password"), ("intruder", PASSWORD)])
def test_flower_without_the_right_credentials_answers_401(flower, path, auth):
    response = get(flower + path, auth=auth)
    assert response.status_code == 401
    assert PASSWORD not in response.text


def test_flower_healthcheck_answers_probes_without_credentials(flower):
    # docker-compose's healthcheck curls it without the password.
    response = get(flower + "/healthcheck")
    assert response.status_code == 200 and response.text == "OK"


def test_flower_lists_the_running_worker(flower, worker):
    # `refresh` makes Flower ask the workers now; a slow reply misses its 1 s window.
    listed = wait_until(
        lambda: flower_json(flower + "/api/workers?refresh=1").get(worker.name),
        30,
        "Flower to list the worker",
    )
    assert RUN_NEXT in listed["registered"]


@pytest.mark.django_db(transaction=True)
def test_flower_shows_a_finished_agent_task_with_its_result(flower, worker, fake_model):
    # Flower knows only the events it received: wait until it hears the worker's heartbeats.
    wait_until(
        lambda: flower_json(flower + "/api/workers?status=1").get(worker.name),
        30,
        "Flower to receive the worker's events",
    )
    fake_model.script("[flower]", Text("Seen by Flower."))
    owner = make_user(unique_name("flower-owner"))
    task = task_create(owner=owner, prompt="[flower] hello", source=Source.API)
    task = wait_for_status(task.pk, TaskStatus.terminal())
    assert task.status == TaskStatus.SUCCEEDED, task.error

    def finished() -> list[dict[str, Any]]:
        tasks = flower_json(flower + f"/api/tasks?taskname={RUN_NEXT}&state=SUCCESS")
        return [t for t in tasks.values() if t.get("result") == str(task.pk)]

    (seen,) = wait_until(finished, 30, "Flower to show the finished task")
    assert seen["name"] == RUN_NEXT and seen["state"] == "SUCCESS"
    assert seen["worker"] == worker.name
