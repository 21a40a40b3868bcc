"""The GitHub jobs against the fake GitHub REST API (no worker: the job functions)."""

from decimal import Decimal
from unittest import mock

import pytest

from tasks_app.models import (
    AgentSession,
    DeliveryOutcome,
    GitHubRepository,
    Source,
    Task,
    TaskStatus,
    WebhookDelivery,
)
from tasks_app.services import github_jobs
from tasks_app.services.github import GitHubTransientError
from tasks_app.services.redis_store import get_redis
from tests.factories import make_user
from tests.fakes.github_api import FakeGitHub
from tests.tasks_app.github.payloads import REPO, issue_comment

TOKEN = "ghp_test_token_123456"


@pytest.fixture
def github(settings):
    with FakeGitHub(token=TOKEN, bot_login="agentsite-bot[bot]") as fake:
        settings.GITHUB_API_URL = fake.base_url
        settings.GITHUB_TOKEN = TOKEN
        settings.PUBLIC_BASE_URL = "https://agents.example.com"
        fake.set_permission(REPO, "alice", "write")
        yield fake


@pytest.fixture
def repo(db):
    return GitHubRepository.objects.create(full_name=REPO, owner=make_user("maintainer"))


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    client = get_redis()
    for key in client.scan_iter("agentsite:rate:*"):
        client.delete(key)


@pytest.fixture(autouse=True)
def no_broker():
    with mock.patch("tasks_app.services.dispatch.current_app.send_task"):
        yield


def accepted(payload=None, delivery_id="d-1") -> WebhookDelivery:
    payload = payload or issue_comment()
    return WebhookDelivery.objects.create(
        delivery_id=delivery_id,
        event="issue_comment",
        action="created",
        repository=payload["repository"]["full_name"],
        sender=payload["sender"]["login"],
        outcome=DeliveryOutcome.ACCEPTED,
        payload=payload,
    )


def test_writer_comment_creates_task_in_thread_session_and_acknowledges(github, repo):
    delivery = accepted(issue_comment("@claude please fix the failing test"))
    github_jobs.process_delivery(delivery.pk)
    delivery.refresh_from_db()
    task = delivery.task
    assert task.owner == repo.owner and task.source == Source.GITHUB
    assert task.session.github_repository == repo and task.session.github_number == 7
    assert "please fix the failing test" in task.prompt and "@claude" not in task.prompt
    (ack,) = github.comments(repo=REPO, number=7)
    assert ack["id"] == delivery.ack_comment_id
    assert f"https://agents.example.com/tasks/{task.pk}/" in ack["body"]
    assert delivery.processed_at is not None


def test_rerun_after_success_creates_nothing_twice(github, repo):
    delivery = accepted()
    github_jobs.process_delivery(delivery.pk)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(processed_at=None)
    github_jobs.process_delivery(delivery.pk)
    assert Task.objects.count() == 1 and len(github.comments(repo=REPO, number=7)) == 1


def test_retry_after_a_failed_acknowledgement_reuses_the_task(github, repo):
    github.fail("POST", f"/repos/{REPO}/issues/7/comments", status=502)
    delivery = accepted()
    with pytest.raises(GitHubTransientError):
        github_jobs.process_delivery(delivery.pk)
    github_jobs.process_delivery(delivery.pk)
    assert Task.objects.count() == 1 and len(github.comments(repo=REPO, number=7)) == 1


@pytest.mark.parametrize(
    ("role", "shown"), [("read", "read"), ("triage", "triage"), (None, "none")]
)
def test_sender_without_write_permission_is_ignored(github, repo, role, shown):
    github.set_permission(REPO, "alice", role)
    delivery = accepted()
    github_jobs.process_delivery(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.outcome == DeliveryOutcome.IGNORED
    assert delivery.reason == f"sender has {shown} permission, not write"
    assert not Task.objects.exists() and github.comments(repo=REPO) == []


@pytest.mark.parametrize("role", ["admin", "maintain", "write"])
def test_admin_maintain_and_write_pass(github, repo, role):
    github.set_permission(REPO, "alice", role)
    delivery = accepted()
    github_jobs.process_delivery(delivery.pk)
    assert Task.objects.count() == 1


@pytest.mark.parametrize(
    ("status", "headers"),
    [(502, {}), (429, {"retry-after": "7"}), (403, {"x-ratelimit-remaining": "0"})],
)
def test_github_outages_and_rate_limits_are_transient(github, repo, status, headers):
    github.fail(
        "GET", f"/repos/{REPO}/collaborators/alice/permission", status=status, headers=headers
    )
    with pytest.raises(GitHubTransientError) as raised:
        github_jobs.process_delivery(accepted().pk)
    if "retry-after" in headers:
        assert raised.value.retry_after_s == 7
    assert not Task.objects.exists()


def test_rate_limit_per_sender_ignores_and_comments_once(github, repo, settings):
    settings.AGENT_GITHUB_RATE_PER_SENDER = "2/hour"
    deliveries = [accepted(issue_comment(number=n), delivery_id=f"rl-{n}") for n in range(1, 6)]
    for delivery in deliveries:
        github_jobs.process_delivery(delivery.pk)
    outcomes = [WebhookDelivery.objects.get(pk=d.pk).reason for d in deliveries]
    assert outcomes[2:] == ["rate_limited"] * 3
    polite = [c for c in github.comments(repo=REPO) if "as many requests" in c["body"]]
    assert len(polite) == 1
    assert Task.objects.count() == 2


def test_second_comment_in_a_thread_uses_the_same_session(github, repo):
    first, second = accepted(delivery_id="a"), accepted(delivery_id="b")
    github_jobs.process_delivery(first.pk)
    github_jobs.process_delivery(second.pk)
    assert AgentSession.objects.count() == 1
    assert Task.objects.filter(session=AgentSession.objects.get()).count() == 2


def test_report_outcome_edits_the_acknowledgement(github, repo):
    delivery = accepted()
    github_jobs.process_delivery(delivery.pk)
    task = WebhookDelivery.objects.get(pk=delivery.pk).task
    Task.objects.filter(pk=task.pk).update(
        status=TaskStatus.SUCCEEDED, result_text="Fixed the test.", cost_usd=Decimal("0.0123"),
        duration_ms=4200, num_turns=3,
    )  # fmt: skip
    github_jobs.report_outcome(task.pk)
    (comment,) = github.comments(repo=REPO, number=7)
    assert comment["body"].startswith("✅ Done")
    assert "> Fixed the test." in comment["body"]
    assert "cost $0.0123" in comment["body"] and "4.2 s" in comment["body"]
    assert len(comment["history"]) == 1


def test_report_before_the_acknowledgement_waits(github, repo):
    delivery = accepted()
    task = Task.objects.create(
        owner=repo.owner, session=AgentSession.objects.create(owner=repo.owner), prompt="x",
        max_attempts=3, timeout_s=60, status=TaskStatus.SUCCEEDED,
    )  # fmt: skip
    WebhookDelivery.objects.filter(pk=delivery.pk).update(task=task)
    with pytest.raises(GitHubTransientError, match="not posted yet"):
        github_jobs.report_outcome(task.pk)


def test_permanently_failed_job_marks_delivery_failed_and_leaves_a_dead_letter(db):
    delivery = accepted()
    with mock.patch("tasks_app.services.dead_letters.publish") as publish:
        github_jobs.job_failed(
            job="tasks_app.github.process_delivery",
            delivery_pk=delivery.pk,
            task_id=None,
            error="GitHub answered 401: Bad credentials",
        )
    delivery.refresh_from_db()
    assert delivery.outcome == DeliveryOutcome.FAILED and "401" in delivery.reason
    assert publish.call_args.kwargs["delivery_id"] == delivery.pk


def test_a_copy_of_the_job_yields_while_another_holds_the_delivery(github, repo):
    delivery = accepted()
    lock = get_redis().lock(f"agentsite:delivery-lock:{delivery.pk}", timeout=30)
    assert lock.acquire(blocking=False)
    try:
        github_jobs.process_delivery(delivery.pk)
    finally:
        lock.release()
    assert not Task.objects.exists() and github.requests() == []
    github_jobs.process_delivery(delivery.pk)
    assert Task.objects.count() == 1


def test_stalled_accepted_deliveries_get_one_fresh_job_per_window(db, settings):
    from datetime import timedelta

    from django.utils import timezone

    from tasks_app.services import maintenance

    settings.AGENT_DELIVERY_REDISPATCH_AFTER_S = 60
    stalled = accepted(delivery_id="stalled")
    accepted(delivery_id="fresh")
    WebhookDelivery.objects.filter(pk=stalled.pk).update(
        received=timezone.now() - timedelta(minutes=5)
    )
    get_redis().delete(f"agentsite:delivery-redispatched:{stalled.pk}")
    with mock.patch("tasks_app.services.dispatch.publish_delivery_processing") as publish:
        assert maintenance.redispatch_stalled_deliveries() == 1
        assert maintenance.redispatch_stalled_deliveries() == 0
    publish.assert_called_once_with(stalled.pk)
