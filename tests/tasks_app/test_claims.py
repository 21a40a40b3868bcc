import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tasks_app.models import Source, Task, TaskStatus
from tasks_app.services import tasks as task_services
from tasks_app.services.claims import CANDIDATES, best_eligible_task, claim_next_task
from tests.concurrency import race
from tests.factories import make_session, make_task, make_user
from tests.markers import on_postgresql

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


def test_claim_finds_the_eligible_task_behind_more_candidates_that_all_wait(user, other_user):
    # Each of these sessions has an earlier task backing off and a later one that is due
    # and outranks every other task: all the claim's first candidates must wait.
    for _ in range(CANDIDATES + 2):
        session = make_session(user)
        make_task(user, session=session, run_after=timezone.now() + timedelta(minutes=1))
        make_task(user, session=session, priority=5)
    eligible = make_task(other_user)
    assert claim_next_task(worker="w").pk == eligible.pk
    assert claim_next_task(worker="w") is None


def _plan_rows(node: dict[str, Any]) -> Iterator[int]:
    """Rows each node of an EXPLAIN ANALYZE plan produced or threw away, over all loops."""
    loops = node.get("Actual Loops", 1)
    yield node.get("Actual Rows", 0) * loops
    for removed in ("Rows Removed by Filter", "Rows Removed by Join Filter"):
        yield node.get(removed, 0) * loops
    for child in node.get("Plans", []):
        yield from _plan_rows(child)


@on_postgresql
def test_a_claim_reads_the_queue_a_bounded_number_of_times_with_stale_statistics(user):
    # Statistics taken before a burst: the planner believes almost nothing is queued, and
    # planned the session rule's anti-join as a nested loop over the queue (a claim then
    # went through 64,516 rows for 254 queued tasks).
    make_task(user, status=S.SUCCEEDED)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE tasks_app_task")
    queued = 300
    for _ in range(queued):
        make_task(user)
    with CaptureQueriesContext(connection) as captured:
        assert best_eligible_task(now=timezone.now()) is not None
    selects = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("SELECT")]
    assert selects
    rows = 0
    with connection.cursor() as cursor:
        for sql in selects:
            cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
            (plan,) = cursor.fetchone()
            plan = json.loads(plan) if isinstance(plan, str) else plan
            rows += sum(_plan_rows(plan[0]["Plan"]))
    assert rows <= 10 * queued, f"the claim's queries went through {rows} rows"


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_a_claim_is_not_held_up_while_its_owner_creates_a_task(monkeypatch):
    # A claim updates its task twice, so PostgreSQL checks the owner's key when it
    # commits; a task creation holding the owner's row must not make it wait (the claim
    # holds the lock every other claim waits for).
    owner = make_user("busy")
    queued = make_task(owner)
    locked, release = threading.Event(), threading.Event()
    check_quotas = task_services._check_quotas

    def paused_check(user: Any) -> None:
        check_quotas(user)
        locked.set()
        release.wait(30)

    monkeypatch.setattr(task_services, "_check_quotas", paused_check)
    creation = threading.Thread(
        target=race, args=(1, lambda _: task_services.task_create(
            owner=owner, prompt="hello", source=Source.API
        ))
    )  # fmt: skip
    creation.start()
    try:
        assert locked.wait(30), "the creation never took its lock"
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '5s'")
        claimed = claim_next_task(worker="w")
    finally:
        release.set()
        creation.join(30)
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
    assert claimed is not None and claimed.pk == queued.pk
    assert not creation.is_alive()
    assert Task.objects.filter(owner=owner).count() == 2


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


@override_settings(AGENT_STALE_AFTER_S=60)
def test_a_workers_running_count_takes_its_own_tasks_with_a_fresh_heartbeat(user):
    from datetime import timedelta

    from tasks_app.services.claims import worker_running_count

    now = timezone.now()
    assert worker_running_count(worker="w", now=now) == 0
    for beat_s_ago in (0, 30, 59):
        make_task(
            user, status=S.RUNNING, worker="w", heartbeat_at=now - timedelta(seconds=beat_s_ago)
        )
    make_task(user, status=S.RUNNING, worker="w", heartbeat_at=now - timedelta(seconds=61))
    make_task(user, status=S.RUNNING, worker="other", heartbeat_at=now)
    make_task(user, status=S.SUCCEEDED, worker="w", heartbeat_at=now)
    assert worker_running_count(worker="w", now=now) == 3
    assert worker_running_count(worker="other", now=now) == 1
    assert worker_running_count(worker="w", now=now + timedelta(seconds=30)) == 2


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
