"""The GitHub jobs: turn an accepted delivery into a task, and report the task's outcome.

Both are idempotent, because Celery retries them: a delivery gets at most one task
and one acknowledgement comment, whatever step a retry resumes from.
"""

from __future__ import annotations

import contextlib

import structlog
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from redis.exceptions import LockError

from tasks_app.metrics import WEBHOOK_DELIVERIES
from tasks_app.models import (
    AgentSession,
    DeliveryOutcome,
    GitHubRepository,
    Source,
    Task,
    WebhookDelivery,
)
from tasks_app.services import dead_letters, github_text, rate_limits
from tasks_app.services.errors import QuotaExceeded
from tasks_app.services.github import WRITE_ROLES, GitHubClient, GitHubTransientError
from tasks_app.services.github_events import NotATrigger, Trigger, classify
from tasks_app.services.redis_store import get_redis
from tasks_app.services.sessions import session_create
from tasks_app.services.tasks import task_create

log = structlog.get_logger(__name__)


def _ignore(delivery: WebhookDelivery, reason: str) -> None:
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        outcome=DeliveryOutcome.IGNORED, reason=reason[:200], processed_at=timezone.now()
    )
    log.info("delivery_ignored", reason=reason)


def thread_session(trigger: Trigger) -> AgentSession:
    """The one session of an issue or pull request thread, created on first use."""
    repository: GitHubRepository = trigger.repository
    lookup = {"github_repository": repository, "github_number": trigger.number}
    session = AgentSession.objects.filter(**lookup).first()
    if session is not None:
        return session
    title = f"{repository.full_name}#{trigger.number}: {trigger.title}"
    try:
        with transaction.atomic():
            return session_create(
                owner=repository.owner, title=title, source=Source.GITHUB, **lookup
            )
    except IntegrityError:  # a concurrent comment on the same thread created it first
        return AgentSession.objects.get(**lookup)


def _within_rate_limits(gh: GitHubClient, trigger: Trigger) -> bool:
    repo = trigger.repository.full_name
    checks = [
        (f"gh-repo:{repo.lower()}", settings.AGENT_GITHUB_RATE_PER_REPO),
        (f"gh-sender:{trigger.author.lower()}", settings.AGENT_GITHUB_RATE_PER_SENDER),
    ]
    for key, rate in checks:
        if not rate_limits.allow(key, rate):
            if rate_limits.first_refusal(key, rate):
                polite = github_text.rate_limited_body(trigger.author)
                gh.create_comment(repo, trigger.number, polite)
            return False
    return True


def _create_task(delivery: WebhookDelivery, trigger: Trigger) -> Task:
    with transaction.atomic():
        task = task_create(
            owner=trigger.repository.owner,
            prompt=github_text.build_prompt(trigger),
            source=Source.GITHUB,
            session=thread_session(trigger),
        )
        WebhookDelivery.objects.filter(pk=delivery.pk).update(task=task)
    return task


# Longer than one pass of the job can take (two GitHub calls with their timeouts).
DELIVERY_LOCK_S = 120


def process_delivery(delivery_pk: int) -> None:
    """Process an accepted delivery; a copy of the job running at the same time yields."""
    lock = get_redis().lock(f"agentsite:delivery-lock:{delivery_pk}", timeout=DELIVERY_LOCK_S)
    if not lock.acquire(blocking=False):
        log.info("delivery_busy_elsewhere", delivery_pk=delivery_pk)
        return
    try:
        _process_delivery(delivery_pk)
    finally:
        with contextlib.suppress(LockError):  # expired under a very slow GitHub
            lock.release()


def _process_delivery(delivery_pk: int) -> None:
    delivery = WebhookDelivery.objects.select_related("task").get(pk=delivery_pk)
    structlog.contextvars.bind_contextvars(delivery_id=delivery.delivery_id)
    if delivery.outcome != DeliveryOutcome.ACCEPTED or delivery.processed_at is not None:
        return
    try:
        trigger = classify(delivery.event, delivery.payload or {})
    except NotATrigger as exc:  # e.g. the repository was disabled since
        _ignore(delivery, str(exc))
        return
    repo = trigger.repository.full_name
    with GitHubClient() as gh:
        task = delivery.task
        if task is None:
            role = gh.permission(repo, trigger.author)
            if role not in WRITE_ROLES:
                _ignore(delivery, f"sender has {role} permission, not write")
                return
            if not _within_rate_limits(gh, trigger):
                _ignore(delivery, "rate_limited")
                return
            try:
                task = _create_task(delivery, trigger)
            except QuotaExceeded as exc:
                gh.create_comment(
                    repo, trigger.number, github_text.refused_body(trigger.author, exc.message)
                )
                _ignore(delivery, f"quota: {exc.message}")
                return
        if delivery.ack_comment_id is None:
            comment = gh.create_comment(repo, trigger.number, github_text.ack_body(task))
            WebhookDelivery.objects.filter(pk=delivery.pk).update(ack_comment_id=comment.id)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(processed_at=timezone.now())
    log.info("delivery_processed", task_id=task.pk)


def thread_of(delivery: WebhookDelivery) -> tuple[str, int]:
    """(repository, issue or pull request number) of a recorded delivery."""
    payload = delivery.payload or {}
    issue = payload.get("issue") or payload.get("pull_request") or {}
    return delivery.repository, int(issue["number"])


def report_outcome(task_id: int) -> None:
    """Edit each acknowledgement comment of the task's deliveries with its outcome."""
    task = Task.objects.get(pk=task_id)
    structlog.contextvars.bind_contextvars(task_id=task.pk)
    deliveries = WebhookDelivery.objects.filter(task=task, outcome=DeliveryOutcome.ACCEPTED)
    body = github_text.outcome_body(task)
    with GitHubClient() as gh:
        for delivery in deliveries:
            repo, number = thread_of(delivery)
            if delivery.ack_comment_id is not None:
                gh.edit_comment(repo, delivery.ack_comment_id, body)
            elif delivery.processed_at is None:
                # The task beat its own acknowledgement: wait for it rather than post twice.
                raise GitHubTransientError("the acknowledgement comment is not posted yet")
            else:
                gh.create_comment(repo, number, body)


def job_failed(*, job: str, delivery_pk: int | None, task_id: int | None, error: str) -> None:
    """A job that will not be retried again: record why, and leave a dead letter."""
    reason = error[:2000]
    WEBHOOK_DELIVERIES.labels(DeliveryOutcome.FAILED.value).inc()
    if delivery_pk is not None:
        WebhookDelivery.objects.filter(pk=delivery_pk).update(
            outcome=DeliveryOutcome.FAILED, reason=reason[:200], processed_at=timezone.now()
        )
    dead_letters.publish(
        job=job,
        reason=reason,
        key=f"{job}:{delivery_pk or ''}:{task_id or ''}",
        args=[delivery_pk if delivery_pk is not None else task_id],
        delivery_id=delivery_pk,
        task_id=task_id,
    )
