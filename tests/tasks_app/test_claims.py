from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from tasks_app.models import Task, TaskStatus
from tasks_app.services.claims import claim_next_task
from tests.concurrency import race
from tests.factories import make_session, make_task, make_user

S = TaskStatus


def test_claim_takes_highest_priority_then_oldest(user):
    older_low = make_task(user, priority=0)
    make_task(user, priority=0)
    high = make_task(user, priority=3)
    assert claim_next_task(worker="w").pk == high.pk
    assert claim_next_task(worker="w").pk == older_low.pk


@override_settings(AGENT_MAX_RUNNING_PER_USER=1)
def test_claim_skips_users_at_their_running_limit(user, other_user):
    make_task(user, status=S.RUNNING, heartbeat_at=timezone.now())
    make_task(user)
    theirs = make_task(other_user)
    assert claim_next_task(worker="w").pk == theirs.pk
    assert claim_next_task(worker="w") is None


def test_claim_runs_a_sessions_tasks_one_at_a_time_in_order(user):
    session = make_session(user)
    first = make_task(user, session=session)
    second = make_task(user, session=session, priority=9)
    assert claim_next_task(worker="w").pk == first.pk
    assert claim_next_task(worker="w") is None  # the session is busy
    Task.objects.filter(pk=first.pk).update(status=S.SUCCEEDED)
    assert claim_next_task(worker="w").pk == second.pk


def test_claim_waits_for_a_retry_backoff(user):
    make_task(user, run_after=timezone.now() + timedelta(minutes=1))
    assert claim_next_task(worker="w") is None


def test_claim_takes_a_task_whose_backoff_just_ended(user, other_user):
    # The claim's SQL is compiled once per process: each claim must use its own time.
    make_task(user, run_after=timezone.now() + timedelta(minutes=1))
    due = make_task(other_user, run_after=timezone.now() - timedelta(seconds=1))
    assert claim_next_task(worker="w").pk == due.pk
    assert claim_next_task(worker="w") is None


def test_claim_follows_a_changed_per_user_limit(user):
    make_task(user, status=S.RUNNING, heartbeat_at=timezone.now())
    queued = make_task(user)
    with override_settings(AGENT_MAX_RUNNING_PER_USER=1):
        assert claim_next_task(worker="w") is None
    with override_settings(AGENT_MAX_RUNNING_PER_USER=2):
        assert claim_next_task(worker="w").pk == queued.pk


@override_settings(AGENT_MAX_CONCURRENCY=1)
def test_claim_refuses_a_worker_at_its_concurrency(user, other_user):
    make_task(user, status=S.RUNNING, worker="w", heartbeat_at=timezone.now())
    make_task(other_user)
    assert claim_next_task(worker="w") is None
    assert claim_next_task(worker="other") is not None


@pytest.mark.django_db(transaction=True)
@override_settings(AGENT_MAX_RUNNING_PER_USER=2, AGENT_MAX_CONCURRENCY=100)
def test_racing_claimers_never_exceed_the_per_user_limit():
    owner = make_user("busy")
    for _ in range(6):
        make_task(owner)
    won = race(8, lambda i: claim_next_task(worker=f"w{i}"))
    claimed = [task.pk for task in won if task is not None]
    assert len(claimed) == 2 and len(set(claimed)) == 2
    assert Task.objects.filter(status=S.RUNNING).count() == 2
