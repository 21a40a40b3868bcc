"""A task's spans with the in-memory exporter: stored context, claim, attempt, CLI run."""

from collections.abc import Iterator
from decimal import Decimal

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.test.globals_test import reset_trace_globals
from opentelemetry.trace import StatusCode

from agentsite.telemetry import tracing_configured
from cli_exec.claude import RunSummary, Verdict
from cli_exec.runner import RunOutcome, StopReason
from tasks_app.models import Source
from tasks_app.services import traces
from tasks_app.services.tasks import task_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reset_trace_globals()
    trace.set_tracer_provider(provider)
    yield exporter
    provider.shutdown()
    reset_trace_globals()  # the rest of the suite runs untraced, as by default


def outcome(exit_code: int = 0) -> RunOutcome:
    return RunOutcome(StopReason.EXITED, exit_code, {}, "", 12, 3400, 1.5, pid=4321)


def summary(verdict: Verdict = Verdict.SUCCEEDED, error: str = "") -> RunSummary:
    return RunSummary(verdict, error, "done", "sid", Decimal("0.0123"), 10, 20, 2, 1500, None)


def by_name(exporter: InMemorySpanExporter) -> dict[str, object]:
    return {span.name: span for span in exporter.get_finished_spans()}


def test_an_attempt_continues_the_trace_of_the_request_that_created_its_task(exporter, user):
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("POST api/tasks/") as request:
        task = task_create(owner=user, prompt="trace me", source=Source.API)
    request_context = request.get_span_context()
    version, trace_id, parent_id, _flags = task.trace_parent.split("-")
    assert (version, trace_id, parent_id) == (
        "00",
        f"{request_context.trace_id:032x}",
        f"{request_context.span_id:016x}",
    )
    task.attempts, task.worker = 1, "w1@host"
    started = traces.claim_started()
    with tracer.start_as_current_span("run/tasks_app.run_next_agent_task") as wakeup:
        with traces.attempt_span(task, claim_started_ns=started) as attempt:
            with traces.cli_span(task) as cli:
                traces.cli_started(cli, 4321)
                traces.cli_ended(cli, outcome(), summary())
    spans = by_name(exporter)
    claim, attempt_span, cli_span = (
        spans["agent_task.claim"],
        spans["agent_task.attempt"],
        spans["claude.cli"],
    )
    # Claim and attempt are the request's children, in its trace, not the wake-up's.
    for span in (claim, attempt_span):
        assert span.parent.span_id == request_context.span_id
        assert span.context.trace_id == request_context.trace_id
        assert [link.context.span_id for link in span.links] == [wakeup.get_span_context().span_id]
        assert span.attributes["agentsite.task_id"] == task.pk
        assert span.attributes["agentsite.worker"] == "w1@host"
    assert claim.start_time == started and claim.end_time <= attempt_span.start_time
    assert cli_span.parent.span_id == attempt.get_span_context().span_id
    assert dict(cli_span.attributes) == {
        "agentsite.task_id": task.pk,
        "agentsite.attempt": 1,
        "process.pid": 4321,
        "process.exit_code": 0,
        "agentsite.stop_reason": "exited",
        "agentsite.stdout_lines": 12,
        "agentsite.verdict": "succeeded",
        "agentsite.cost_usd": 0.0123,
        "agentsite.num_turns": 2,
    }
    assert cli_span.status.status_code is StatusCode.UNSET


def test_a_failed_run_marks_its_span_as_an_error_with_the_reason(exporter, user):
    task = task_create(owner=user, prompt="fail", source=Source.API)
    with traces.cli_span(task) as cli:
        traces.cli_ended(cli, outcome(exit_code=1), summary(Verdict.FAILED, "max turns"))
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "max turns"
    assert span.attributes["process.exit_code"] == 1


def test_an_untraced_task_runs_under_the_wake_up_that_claimed_it(exporter, user):
    task = task_create(owner=user, prompt="created untraced", source=Source.API)
    assert task.trace_parent == ""
    with trace.get_tracer("tests").start_as_current_span("wake-up") as wakeup:
        with traces.attempt_span(task, claim_started_ns=traces.claim_started()):
            pass
    attempt = by_name(exporter)["agent_task.attempt"]
    assert attempt.parent.span_id == wakeup.get_span_context().span_id
    assert attempt.links == ()


def test_without_a_provider_nothing_is_stored_or_recorded(user):
    with trace.get_tracer("tests").start_as_current_span("request") as span:
        task = task_create(owner=user, prompt="untraced service", source=Source.API)
    assert not span.get_span_context().is_valid
    assert task.trace_parent == ""


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "false"}, True),
    ],
)
def test_tracing_is_on_only_with_an_otlp_endpoint_and_the_sdk_not_disabled(environ, on):
    assert tracing_configured(environ) is on
