"""Readiness: can this process serve? Each dependency is checked with a short timeout."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
import redis
from django.conf import settings
from django.db import connection
from kombu import Connection

from cli_exec.sandbox import SandboxUnavailable
from tasks_app.services import model_breaker, sandboxing
from tasks_app.services.cli_binary import cli_version

CHECK_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def check_database() -> str:
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return connection.vendor
    # A connection of its own, with a connect timeout: a pooled one that the server
    # stopped answering (hung, or cut off without a reset) would hold the probe for as
    # long as the outage lasts, as no client-side timeout bounds a query.
    params = {**connection.get_connection_params(), "connect_timeout": int(CHECK_TIMEOUT_S)}
    with psycopg.connect(**params) as conn:
        conn.execute("SELECT 1").fetchone()
    return connection.vendor


def check_redis() -> str:
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=CHECK_TIMEOUT_S, socket_timeout=CHECK_TIMEOUT_S
    )
    try:
        client.ping()
    finally:
        client.close()
    return "pong"


def check_broker() -> str:
    with Connection(settings.CELERY_BROKER_URL, connect_timeout=CHECK_TIMEOUT_S) as conn:
        conn.ensure_connection(
            max_retries=1, interval_start=0, interval_step=0, timeout=CHECK_TIMEOUT_S
        )
        if conn.transport_cls in {"redis", "rediss"}:
            # kombu's redis transport connects lazily; a PING proves the server answers.
            conn.default_channel.client.ping()
    return conn.transport_cls


def check_cli() -> str:
    return cli_version(timeout_s=CHECK_TIMEOUT_S * 2)


def check_sandbox() -> str:
    status = sandboxing.service_status()
    if not status.available:
        raise SandboxUnavailable(status.detail)
    return status.detail


def check_model_api() -> str:
    """Informational: a degraded model API holds tasks back but the service is ready."""
    since = model_breaker.state().degraded_since
    if since is None:
        return "circuit breaker closed"
    when = datetime.fromtimestamp(since, tz=UTC).isoformat(timespec="seconds")
    return f"model API degraded since {when}: workers hold queued tasks back"


CHECKS: dict[str, Callable[[], str]] = {
    "database": check_database,
    "redis": check_redis,
    "broker": check_broker,
    "cli": check_cli,
    "sandbox": check_sandbox,
    "model_api": check_model_api,
}


def run_checks() -> list[CheckResult]:
    results = []
    for name, check in CHECKS.items():
        try:
            results.append(CheckResult(name, True, check()))
        except Exception as exc:
            # A readiness probe must report every failing part, whatever it raised.
            results.append(CheckResult(name, False, f"{type(exc).__name__}: {exc}"[:300]))
    return results
