"""Run tasks and webhooks through real processes, then scrape /metrics from web."""

import re

import httpx
import pytest

from tasks_app.models import GitHubRepository, Source, TaskStatus
from tasks_app.services.tasks import task_create
from tests.engine import celery_worker, engine_env, wait_until_finished
from tests.fakes.anthropic_api import Error, Text
from tests.live import asgi_server, free_port, wait_until
from tests.tasks_app.github.payloads import REPO, SECRET, encode, headers, issue_comment

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def value(body: str, sample: str) -> float:
    match = re.search(rf"^{re.escape(sample)} ([0-9.e+-]+)$", body, re.M)
    assert match, f"{sample} not in metrics"
    return float(match.group(1))


def test_metrics_count_what_workers_and_web_did(fake_model, owner, workspace_root, tmp_path):
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    env = engine_env(
        fake_model.base_url, workspace_root,
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), GITHUB_WEBHOOK_SECRET=SECRET,
    )  # fmt: skip
    GitHubRepository.objects.create(full_name=REPO, owner=owner)
    fake_model.script("[ok]", *[Text("fine")] * 3)
    fake_model.script("[flaky]", Error(529), Error(529), Text("recovered"))
    fake_model.script("[broken]", *[Error(500)] * 6)  # 3 attempts of 2 requests
    with asgi_server(env) as (url, _), celery_worker(env, concurrency=2, queues="agent,celery"):
        tasks = [task_create(owner=owner, prompt=f"[ok] {i}", source=Source.API) for i in range(3)]
        tasks.append(task_create(owner=owner, prompt="[flaky]", source=Source.API))
        tasks.append(task_create(owner=owner, prompt="[broken]", source=Source.API))
        for payload in (issue_comment(), issue_comment("no mention")):
            body = encode(payload)
            httpx.post(f"{url}/webhooks/github/", content=body, headers=headers(body))
        finished = wait_until_finished([t.pk for t in tasks])
        statuses = sorted(t.status for t in finished)
        assert statuses == sorted([TaskStatus.SUCCEEDED] * 4 + [TaskStatus.DEAD_LETTER]), [
            (t.prompt, t.status, t.attempts, t.result_text, t.error) for t in finished
        ]
        body = wait_until(
            lambda: (
                (text := httpx.get(f"{url}/metrics").text)
                and "agentsite_dead_letters_total 1.0" in text
                and text
            ),
            30,
            "worker metrics to reach web",
        )
    assert value(body, 'agentsite_tasks{status="succeeded"}') == 4
    assert value(body, 'agentsite_tasks{status="dead_letter"}') == 1
    assert value(body, 'agentsite_tasks_finished_total{status="succeeded"}') == 4
    assert value(body, 'agentsite_task_run_seconds_count{status="succeeded"}') == 4
    assert value(body, 'agentsite_task_run_seconds_bucket{le="+Inf",status="succeeded"}') == 4
    assert value(body, 'agentsite_task_retries_total{reason="transient"}') == 3  # 1 + 2
    assert value(body, "agentsite_cost_usd_total") > 0
    assert value(body, "agentsite_cli_processes") == 0
    assert value(body, 'agentsite_webhook_deliveries_total{outcome="accepted"}') == 1
    assert value(body, 'agentsite_webhook_deliveries_total{outcome="ignored"}') == 1
    assert value(body, 'agentsite_queue_depth{queue="github"}') >= 1  # no github worker here
    assert "agentsite_websocket_connections" in body


def test_a_worker_serves_its_own_metrics_when_asked(fake_model, owner, workspace_root, tmp_path):
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    port = free_port()
    env = engine_env(
        fake_model.base_url, workspace_root,
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), AGENT_WORKER_METRICS_PORT=str(port),
    )  # fmt: skip
    with celery_worker(env, concurrency=1):
        task = task_create(owner=owner, prompt="measured", source=Source.API)
        wait_until_finished([task.pk])
        body = wait_until(
            lambda: (
                (text := httpx.get(f"http://127.0.0.1:{port}/metrics").text)
                and 'agentsite_tasks_finished_total{status="succeeded"} 1.0' in text
                and text
            ),
            30,
            "the worker's metrics",
        )
    assert value(body, 'agentsite_task_run_seconds_count{status="succeeded"}') == 1
