"""A fake OpenTelemetry collector: OTLP/HTTP (protobuf) on 127.0.0.1, spans kept in memory.

Processes under test export to it exactly as to a real collector (set
OTEL_EXPORTER_OTLP_ENDPOINT to `base_url`); the test reads back flat `ReceivedSpan`s.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.fakes.http_base import BackgroundServer, FakeRequestHandler

TRACES_PATH = "/v1/traces"
PROTOBUF = "application/x-protobuf"


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root span
    kind: int  # opentelemetry.proto.trace.v1.Span.SpanKind
    attributes: dict[str, Any] = field(default_factory=dict)
    links: tuple[str, ...] = ()  # the span ids this span links to
    status_code: int = 0  # 2: error


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(item) for item in value.array_value.values]
    return getattr(value, which) if which else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def decode(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        service = _attributes(resource_spans.resource.attributes).get("service.name", "")
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        service=service,
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        kind=span.kind,
                        attributes=_attributes(span.attributes),
                        links=tuple(link.span_id.hex() for link in span.links),
                        status_code=span.status.code,
                    )
                )
    return spans


class _Handler(FakeRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.read_body()
        if self.path != TRACES_PATH or self.headers.get("content-type") != PROTOBUF:
            self.send_json(404, {"error": "only protobuf traces are collected here"})
            return
        try:
            spans = decode(body)
        except Exception as exc:  # noqa: BLE001 - the client sent something else: say so
            self.send_json(400, {"error": f"not an ExportTraceServiceRequest: {exc}"})
            return
        self.fake.received(spans)
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_bytes(200, reply, content_type=PROTOBUF)


class FakeCollector:
    """Use as a context manager; every socket and thread is gone on exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self._server: BackgroundServer | None = None
        self.base_url = ""

    def __enter__(self) -> FakeCollector:
        self._server = BackgroundServer(self, _Handler, name="fake-otlp")
        self.base_url = self._server.base_url
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.close()

    def received(self, spans: list[ReceivedSpan]) -> None:
        with self._lock:
            self._spans.extend(spans)

    def spans(self, **match: Any) -> list[ReceivedSpan]:
        """Spans received so far whose fields equal `match` (name=…, trace_id=…)."""
        with self._lock:
            spans = list(self._spans)
        return [s for s in spans if all(getattr(s, k) == v for k, v in match.items())]

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return self.spans(trace_id=trace_id)
