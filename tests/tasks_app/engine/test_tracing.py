"""One trace from request to CLI: real web server and worker exporting OTLP to a fake
collector, a signed GitHub comment and an API request, the real CLI and fake GitHub."""

from __future__ import annotations

import httpx
import pytest

from tasks_app.models import Source, Task, TaskStatus
from tasks_app.services.tokens import api_token_create
from tests.engine import celery_worker, wait_for_status
from tests.fakes.anthropic_api import Text
from tests.fakes.otlp_collector import FakeCollector, ReceivedSpan
from tests.live import asgi_server, wait_until
from tests.tasks_app.engine.git_helpers import git_env
from tests.tasks_app.engine.test_workspaces_github import deliver, edited_comment
from tests.tasks_app.github.payloads import issue_comment

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
SERVER, CLIENT = 2, 3  # opentelemetry.proto.trace.v1.Span.SpanKind


def lineage(span: ReceivedSpan, collector: FakeCollector) -> list[ReceivedSpan]:
    """`span`, its parent, its parent's parent … up to the root (as far as received)."""
    by_id = {s.span_id: s for s in collector.trace(span.trace_id)}
    chain = [span]
    while chain[-1].parent_id in by_id:
        chain.append(by_id[chain[-1].parent_id])
    return chain


def cli_span_of(task: Task, collector: FakeCollector) -> ReceivedSpan | None:
    found = [
        s
        for s in collector.spans(name="claude.cli")
        if s.attributes.get("agentsite.task_id") == task.pk
    ]
    return found[0] if found else None


def complete_lineage(span: ReceivedSpan | None, collector: FakeCollector) -> list[ReceivedSpan]:
    """The lineage once it reaches a root (every hop exported), else []."""
    if span is None:
        return []
    chain = lineage(span, collector)
    return chain if chain[-1].parent_id == "" else []


def test_a_webhook_and_an_api_request_each_trace_through_the_cli_run(
    fake_model, hosted_github, registered, owner, workspace_root
):
    fake_model.script("please trace this", Text("Traced."))
    fake_model.script("from the api", Text("Also traced."))
    _, key = api_token_create(user=owner, name="tracing")
    with FakeCollector() as collector:
        env = git_env(
            fake_model,
            hosted_github,
            workspace_root,
            OTEL_EXPORTER_OTLP_ENDPOINT=collector.base_url,
            OTEL_BSP_SCHEDULE_DELAY="100",
        )
        with asgi_server(env) as (url, _), celery_worker(env, concurrency=2):
            deliver(url, issue_comment("@claude please trace this"))
            task = wait_until(lambda: Task.objects.first(), 30, "the GitHub task")
            from_github = wait_for_status(task.pk, TaskStatus.terminal())
            edited_comment(hosted_github, 7, from_github)
            answer = httpx.post(
                f"{url}/api/tasks/",
                json={"prompt": "from the api"},
                headers={"Authorization": f"Token {key}"},
                timeout=10,
            )
            assert answer.status_code == 201, answer.text
            from_api = wait_for_status(answer.json()["id"], TaskStatus.terminal())
            github_run = wait_until(
                lambda: complete_lineage(cli_span_of(from_github, collector), collector),
                30,
                "the GitHub task's trace",
            )
            api_run = wait_until(
                lambda: complete_lineage(cli_span_of(from_api, collector), collector),
                30,
                "the API task's trace",
            )
            comment_edit = wait_until(
                lambda: [
                    s
                    for s in collector.trace(github_run[0].trace_id)
                    if s.kind == CLIENT and s.attributes.get("http.method") == "PATCH"
                ],
                30,
                "the comment edit's span",
            )
    assert from_github.status == TaskStatus.SUCCEEDED, from_github.error
    assert from_api.status == TaskStatus.SUCCEEDED and from_api.source == Source.API

    cli, *_, webhook = github_run
    assert (webhook.service, webhook.kind) == ("agentsite-web", SERVER)
    assert webhook.attributes["http.route"] == "webhooks/github/"
    assert webhook.attributes["http.status_code"] == 202
    # The attempt continues the job that created the task, not the wake-up that claimed it.
    hops = [(s.service, s.name) for s in github_run]
    assert hops[1:3] == [
        ("agentsite-worker", "agent_task.attempt"),
        ("agentsite-worker", "run/tasks_app.github.process_delivery"),
    ]
    assert cli.service == "agentsite-worker"
    assert cli.attributes["process.pid"] > 0 and cli.attributes["process.exit_code"] == 0
    assert cli.attributes["agentsite.cost_usd"] == pytest.approx(float(from_github.cost_usd))
    assert cli.attributes["agentsite.verdict"] == "succeeded"
    claims = collector.spans(name="agent_task.claim", trace_id=webhook.trace_id)
    assert [lineage(c, collector)[-1] for c in claims] == [webhook]
    (woken_by,) = [collector.spans(span_id=link)[0].name for link in claims[0].links]
    assert woken_by == "run/tasks_app.run_next_agent_task"

    # The comment's edit is reported by a job the attempt published, in the same trace.
    (edit,) = comment_edit
    edit_hops = [s.name for s in lineage(edit, collector)]
    assert "run/tasks_app.github.report_outcome" in edit_hops
    assert "agent_task.attempt" in edit_hops and edit_hops[-1] == webhook.name
    assert "/issues/comments/" in edit.attributes["http.url"]

    request = api_run[-1]
    assert (request.service, request.kind) == ("agentsite-web", SERVER)
    assert request.attributes["http.route"] == "api/tasks/"
    assert request.trace_id != webhook.trace_id
    assert [s.name for s in api_run] == ["claude.cli", "agent_task.attempt", request.name]
