"""Fault tests with real worker processes: crashes, a wiped broker, limits, shutdown."""

import os
import signal
import threading
from collections import defaultdict

import pytest
import redis
from django.conf import settings

from tasks_app.models import AgentSession, Source, Task, TaskStatus
from tasks_app.services.tasks import task_create
from tests.engine import (
    celery_beat,
    celery_worker,
    engine_env,
    wait_for_status,
    wait_until_finished,
)
from tests.factories import make_user
from tests.fakes.anthropic_api import Hang, Text
from tests.live import stop_process, wait_until
from tests.tasks_app.engine.processes import (
    cli_groups_in,
    parent_pid,
    process_gone,
    worker_processes,
)
from tests.tasks_app.engine.test_control import running_cli_pid

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = TaskStatus


def statuses(task: Task) -> list[str]:
    return [e.payload["status"] for e in task.events.filter(kind="status").order_by("seq")]


def test_kill_9_of_a_worker_mid_task_ends_the_task_exactly_once(
    fake_model, owner, workspace_root, tmp_path
):
    fake_model.script("[crash]", Hang(), Text("finished on the second worker"))
    env = engine_env(fake_model.base_url, workspace_root)
    with celery_beat(env, tmp_path):
        with celery_worker(env, concurrency=1) as doomed:
            task = task_create(owner=owner, prompt="[crash] long job", source=Source.API)
            cli_pid = running_cli_pid(task.pk)
            wait_until(lambda: fake_model.in_flight == 1, 30, "the model request")
            os.kill(doomed.pid, signal.SIGKILL)
            wait_until(lambda: process_gone(cli_pid), 10, "the orphaned CLI to die")
        with celery_worker(env, concurrency=1):
            task = wait_for_status(task.pk, S.terminal(), timeout_s=60)
    assert task.status == S.SUCCEEDED, task.error
    assert task.result_text == "finished on the second worker"
    assert task.attempts == 2
    assert task.events.filter(kind="result").count() == 1
    assert statuses(task) == ["queued", "running", "queued", "running", "succeeded"]
    assert "stopped sending heartbeats" in task.events.filter(kind="status")[2].payload["reason"]
    assert cli_groups_in(workspace_root) == {}


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_sigkill_of_a_whole_worker_tree_with_8_running_loses_none_and_orphans_no_cli(
    fake_model, owner, workspace_root, tmp_path, pool
):
    """The worker's machine vanishes: nothing of the worker may clean up. With the
    threads pool one process holds all 8 slots, and each CLI's parent-death signal is
    armed by the thread that started it, which dies with the process."""
    for i in range(8):
        fake_model.script(f"[tree{i}]", Hang(), Text(f"finished {i} elsewhere"))
    env = engine_env(
        fake_model.base_url,
        workspace_root,
        AGENT_MAX_RUNNING_PER_USER="8",
        AGENT_MAX_CONCURRENCY="8",  # what one worker may run, as its pool size
        AGENT_WORKER_POOL=pool,
    )
    with celery_beat(env, tmp_path):
        with celery_worker(env, concurrency=8) as doomed:
            tasks = [
                task_create(owner=owner, prompt=f"[tree{i}] long job", source=Source.API)
                for i in range(8)
            ]
            cli_pids = [running_cli_pid(task.pk) for task in tasks]
            wait_until(lambda: fake_model.in_flight == 8, 60, "8 model requests")
            own = worker_processes(doomed.pid)
            # The main process and its pool of 8, or (threads) the main process alone.
            assert len(own) == (9 if pool == "prefork" else 1)
            assert {parent_pid(pid) for pid in cli_pids} <= set(own)
            for pid in own:
                os.kill(pid, signal.SIGKILL)
            for pid in cli_pids:
                wait_until(lambda pid=pid: process_gone(pid), 10, f"the orphaned CLI {pid} to die")
            wait_until(lambda: cli_groups_in(workspace_root) == {}, 10, "no run left")
        with celery_worker(env, concurrency=4):
            done = wait_until_finished([t.pk for t in tasks], timeout_s=180)
    assert [t.status for t in done] == [S.SUCCEEDED] * 8, [t.error for t in done]
    for i, task in enumerate(done):
        assert task.result_text == f"finished {i} elsewhere"
        assert task.attempts == 2
        assert task.events.filter(kind="result").count() == 1
        assert statuses(task) == ["queued", "running", "queued", "running", "succeeded"]
    assert cli_groups_in(workspace_root) == {}


def test_flushall_of_redis_with_8_queued_tasks_loses_none(
    fake_model, owner, workspace_root, tmp_path
):
    env = engine_env(fake_model.base_url, workspace_root)
    tasks = [
        task_create(owner=owner, prompt=f"queued {i}", source=Source.API, session=None)
        for i in range(8)
    ]
    # Every wake-up, flag and result the broker held is gone.
    redis.Redis.from_url(settings.REDIS_URL).flushall()
    with celery_beat(env, tmp_path), celery_worker(env, concurrency=4):
        finished = wait_until_finished([t.pk for t in tasks], timeout_s=120)
    assert [t.status for t in finished] == [S.SUCCEEDED] * 8
    assert all(t.attempts == 1 for t in finished)


def peak_overlap(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    peak = current = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak


class CliSampler(threading.Thread):
    """Samples the process table for running CLIs and counts them per session workspace."""

    def __init__(self, root) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.samples: list[list[str]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            runs = cli_groups_in(self.root, agents_only=True)
            self.samples.append([cwd.name for cwd in runs.values()])


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_12_tasks_of_3_users_respect_concurrency_4_and_2_per_user(
    fake_model, workspace_root, tmp_path, pool
):
    env = engine_env(
        fake_model.base_url,
        workspace_root,
        AGENT_MAX_RUNNING_PER_USER="2",
        AGENT_WORKER_POOL=pool,
    )
    users = [make_user(f"load{i}") for i in range(3)]
    for i in range(3):
        # Every reply is held until the test releases them: the worker's four slots fill
        # up, whatever the CLI's start-up costs, and stay full while the test looks.
        fake_model.script(f"[user{i}]", *[Hang()] * 4)
    sampler = CliSampler(workspace_root)
    with celery_worker(env, concurrency=4):
        sampler.start()
        tasks = [
            task_create(owner=users[i % 3], prompt=f"[user{i % 3}] job {i}", source=Source.API)
            for i in range(12)
        ]
        wait_until(lambda: fake_model.in_flight == 4, 60, "four held model requests")
        held = len(cli_groups_in(workspace_root))
        fake_model.release()
        finished = wait_until_finished([t.pk for t in tasks], timeout_s=180)
        sampler.done.set()
        sampler.join()
    assert held == 4
    assert [t.status for t in finished] == [S.SUCCEEDED] * 12
    requests = fake_model.requests()
    intervals = [(r.started_at, r.ended_at) for r in requests]
    per_user = defaultdict(list)
    for r in requests:
        per_user[r.marker].append((r.started_at, r.ended_at))
    peak_requests = peak_overlap(intervals)
    peak_per_user = {marker: peak_overlap(spans) for marker, spans in per_user.items()}
    owner_of = dict(AgentSession.objects.values_list("workspace", "owner_id"))
    peak_processes = max(len(s) for s in sampler.samples)
    peak_processes_per_user = max(
        [owner_of.get(name) for name in sample].count(u.pk)
        for u in users
        for sample in sampler.samples
    )
    print(
        f"\n12 tasks, concurrency 4, 2/user: peak model requests {peak_requests}, per user "
        f"{peak_per_user}; peak CLI processes {peak_processes} ({peak_processes_per_user} "
        f"per user) over {len(sampler.samples)} samples"
    )
    assert peak_requests == 4 and peak_processes <= 4
    assert max(peak_per_user.values()) == 2 and peak_processes_per_user <= 2


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_sigterm_lets_short_tasks_finish_and_hands_long_ones_back(
    fake_model, owner, workspace_root, pool
):
    fake_model.script("[short]", Text("short and done", chunk_chars=4, delay_s=0.2))
    fake_model.script("[long]", Hang(), Text("finished after hand-back"))
    env = engine_env(
        fake_model.base_url, workspace_root, AGENT_SHUTDOWN_GRACE_S="3", AGENT_WORKER_POOL=pool
    )
    other_user = make_user("second")
    with celery_worker(env, concurrency=2) as draining_worker:
        short = task_create(owner=owner, prompt="[short] quick", source=Source.API)
        long = task_create(owner=other_user, prompt="[long] slow", source=Source.API)
        long_pid = running_cli_pid(long.pk)
        # Both CLIs talk to the model before the stop: the short one's answer then takes
        # under a second, well inside the grace, however long the CLIs took to start.
        wait_until(
            lambda: fake_model.requests("[short]") and fake_model.requests("[long]"),
            60,
            "both tasks' model requests",
        )
        os.kill(draining_worker.pid, signal.SIGTERM)
        assert wait_for_status(short.pk, S.terminal()).status == S.SUCCEEDED
        assert wait_for_status(long.pk, [S.QUEUED], timeout_s=30)
        assert process_gone(long_pid)
        assert stop_process(draining_worker, grace_s=30) == 0
    with celery_worker(env, concurrency=1):
        long = wait_for_status(long.pk, S.terminal())
    assert long.status == S.SUCCEEDED and long.result_text == "finished after hand-back"
    assert long.attempts == 2 and long.max_attempts == 4
    handed_back = long.events.filter(kind="status", payload__status="queued").last()
    assert handed_back.payload["reason"] == "handed back: the worker is shutting down"
