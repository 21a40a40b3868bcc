"""OpenTelemetry tracing, on only where an OTLP endpoint is configured.

`start_tracing` runs once per process that serves requests or runs jobs (the ASGI app
at import, each Celery pool process at its start). With neither
OTEL_EXPORTER_OTLP_ENDPOINT nor OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set (or with
OTEL_SDK_DISABLED=true) it installs nothing: no SDK, no instrumented libraries, and the
service's own spans go to the API's no-op tracer. Everything else (sampler, batch
sizes, headers, service name) is the standard OTEL_* environment the SDK reads itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_provider: TracerProvider | None = None


def tracing_configured(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process should trace: an OTLP endpoint is set and the SDK is not off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def start_tracing(role: str, exporter: SpanExporter | None = None) -> bool:
    """Trace this process (`role` names it: web, worker) if configured, or always when
    an `exporter` is given (tests); True when tracing is on. Idempotent."""
    if _provider is not None:
        return True
    if exporter is None and not tracing_configured():
        return False
    # Imported only here: a process that does not trace loads none of the SDK.
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # OTEL_SERVICE_NAME, when set, names every process alike; by default each role
    # is its own service, so a trace shows which hop ran where.
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: f"agentsite-{role}"}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(exporter or OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _instrument_libraries()
    _set_provider(provider)
    return True


def _set_provider(provider: TracerProvider | None) -> None:
    global _provider
    _provider = provider


def _instrument_libraries() -> None:
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    # Django's must come before the request handler loads its middleware.
    DjangoInstrumentor().instrument()
    CeleryInstrumentor().instrument()
    PsycopgInstrumentor().instrument()
    RedisInstrumentor().instrument()
    HTTPXClientInstrumentor().instrument()


def stop_tracing() -> None:
    """Export what is still buffered; for a process about to exit."""
    if _provider is not None:
        _provider.shutdown()
