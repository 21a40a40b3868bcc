"""Prometheus metrics of Agentsite.

Events counted where they happen (workers, web) go through prometheus_client, which
shares them between processes when PROMETHEUS_MULTIPROC_DIR is set (the launcher and
docker-compose set it). State that the database or broker already knows (tasks by
status, queue depth) is read at scrape time, so it is right whoever restarted.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from decimal import Decimal

from celery import current_app
from django.db.models import Count
from kombu import Connection
from kombu.exceptions import ChannelError, OperationalError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector

QUEUES = ("agent", "github", "dead_letter", "celery")

TASKS_FINISHED = Counter(
    "agentsite_tasks_finished", "Tasks that reached a terminal status.", ["status"]
)
TASK_RETRIES = Counter("agentsite_task_retries", "Attempts that ended in a retry.", ["reason"])
MODEL_BREAKER_TRIPS = Counter(
    "agentsite_model_breaker_trips", "Times the model API circuit breaker opened."
)
DEAD_LETTERS = Counter("agentsite_dead_letters", "Tasks and jobs that became dead letters.")
EVENTS_COMPACTED = Counter(
    "agentsite_events_compacted", "Text deltas of old tasks dropped by event retention."
)
COST_USD = Counter("agentsite_cost_usd", "Money spent on the model API, in USD.")
RUN_SECONDS = Histogram(
    "agentsite_task_run_seconds",
    "Wall time of finished tasks from first start to end.",
    ["status"],
    buckets=(1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600),
)
WEBHOOK_DELIVERIES = Counter(
    "agentsite_webhook_deliveries", "GitHub deliveries by outcome.", ["outcome"]
)
CLI_PROCESSES = Gauge(
    "agentsite_cli_processes", "CLI subprocesses running now.", multiprocess_mode="livesum"
)
WEBSOCKETS = Gauge(
    "agentsite_websocket_connections", "Open WebSocket connections.", multiprocess_mode="livesum"
)


def record_cost(cost_usd: Decimal | None) -> None:
    if cost_usd:
        COST_USD.inc(float(cost_usd))


class TaskStateCollector(Collector):
    """Tasks by status, read from the database at scrape time."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from tasks_app.models import Task, TaskStatus

        family = GaugeMetricFamily("agentsite_tasks", "Tasks by current status.", labels=["status"])
        counts = dict(Task.objects.values_list("status").annotate(n=Count("id")).order_by())
        for status in TaskStatus.values:
            family.add_metric([status], counts.get(status, 0))
        yield family


def queue_length(conn: Connection, queue: str) -> int:
    """Messages waiting in `queue` (not those already reserved by a worker)."""
    # A channel of its own: on AMQP a failed passive declare closes the channel.
    with conn.channel() as channel:
        try:
            return int(channel.queue_declare(queue=queue, passive=True).message_count)
        except (ChannelError, OperationalError):
            return 0  # Redis drops empty lists; AMQP: never declared. Either way: empty.


class QueueDepthCollector(Collector):
    """Messages waiting in each broker queue, asked of the broker at scrape time."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "agentsite_queue_depth", "Messages waiting in the broker.", labels=["queue"]
        )
        with current_app.connection_for_read() as conn:
            for queue in QUEUES:
                family.add_metric([queue], queue_length(conn, queue))
        yield family


STATE_REGISTRY = CollectorRegistry(auto_describe=False)
STATE_REGISTRY.register(TaskStateCollector())
STATE_REGISTRY.register(QueueDepthCollector())


def exposition() -> bytes:
    """Every metric: all processes' counters (multiprocess) or this one's, plus state."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        processes = CollectorRegistry()
        MultiProcessCollector(processes)
    else:
        processes = REGISTRY
    return generate_latest(processes) + generate_latest(STATE_REGISTRY)
