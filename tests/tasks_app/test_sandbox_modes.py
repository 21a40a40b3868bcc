"""AGENT_SANDBOX on, off, and on but unavailable: /readyz, the admin, and an attempt whose
sandbox cannot be built (it fails as transient, and the CLI never runs unsandboxed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings

from cli_exec.runner import RunOutcome, StopReason
from tasks_app.models import TaskStatus
from tasks_app.services import sandboxing
from tasks_app.services.execution import execute_claimed_task, judge
from tasks_app.services.lifecycle import claim_task
from tasks_app.services.redis_store import get_redis
from tasks_app.services.sessions import workspace_path
from tests.engine import CLAUDE, sandbox_reachable_dir
from tests.factories import make_task, make_user
from tests.fakes.anthropic_api import FakeAnthropic, Text

pytestmark = pytest.mark.django_db
NO_NAMESPACE = "bwrap: No permissions to create a new namespace, likely because the kernel does not allow non-privileged user namespaces."  # noqa: E501


@pytest.fixture(autouse=True)
def no_worker_reports() -> None:
    """/readyz trusts what live workers report; these tests are about this machine."""
    client = get_redis()
    for key in client.scan_iter(match=sandboxing.STATUS_KEY_PREFIX + "*"):
        client.delete(key)


@pytest.fixture
def scripts_dir() -> Iterator[Path]:
    with sandbox_reachable_dir("scripts") as path:
        yield path


def fake_bwrap(directory: Path, *, fail_runs_only: bool) -> Path:
    """A bwrap that refuses namespaces: always, or only for runs (their mounts come from
    descriptors), so that the worker's probe passes and the run itself fails."""
    real = sandboxing.bwrap_path()
    script = directory / "bwrap"
    refuse = f'echo "{NO_NAMESPACE}" >&2; exit 1'
    if fail_runs_only:
        body = f'case "$*" in *--bind-fd*) {refuse};; esac\nexec {real} "$@"\n'
    else:
        body = f"{refuse}\n"
    script.write_text(f"#!/bin/sh\n{body}")
    script.chmod(0o755)
    return script


def test_readyz_reports_the_sandbox_and_its_limits_when_on(client):
    body = client.get("/readyz").json()
    assert body["checks"]["sandbox"]["ok"]
    assert "bubblewrap as uid 64100" in body["checks"]["sandbox"]["detail"]
    assert "pids 1024 (cgroup v1)" in body["checks"]["sandbox"]["detail"]
    assert "agents' cpu weight 10 (cgroup v1)" in body["checks"]["sandbox"]["detail"]


def test_readyz_is_503_naming_a_missing_bubblewrap(client, tmp_path):
    with override_settings(AGENT_SANDBOX_BWRAP=str(tmp_path / "no-bwrap")):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["sandbox"]
    assert "no-bwrap) did not start" in response.json()["checks"]["sandbox"]["detail"]


def test_readyz_is_503_naming_refused_namespaces(client, scripts_dir):
    with override_settings(AGENT_SANDBOX_BWRAP=str(fake_bwrap(scripts_dir, fail_runs_only=False))):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert NO_NAMESPACE in response.json()["checks"]["sandbox"]["detail"]


def test_readyz_is_503_when_the_sandbox_user_cannot_reach_the_workspaces(client, tmp_path):
    private = tmp_path / "workspaces"  # pytest's tmp root is 0700: uid 64100 cannot enter
    with override_settings(AGENT_WORKSPACE_ROOT=private):
        response = client.get("/readyz")
    detail = response.json()["checks"]["sandbox"]["detail"]
    assert response.status_code == 503
    assert "Permission denied" in detail and "uid 64100" in detail


def test_readyz_and_admin_show_an_explicit_off(client, admin_client):
    with override_settings(AGENT_SANDBOX="off"):
        ready = client.get("/readyz")
        admin = admin_client.get("/admin/")
    assert ready.status_code == 200
    assert ready.json()["checks"]["sandbox"]["detail"].startswith("off (AGENT_SANDBOX=off)")
    assert "Agent sandbox: <strong>OFF</strong>" in admin.content.decode()


def test_admin_shows_the_sandbox_on_with_its_limits(admin_client):
    page = admin_client.get("/admin/").content.decode()
    assert "Agent sandbox: <strong>on</strong>" in page and "cgroup v1" in page


def test_workers_report_what_readyz_answers(client):
    broken = sandboxing.SandboxStatus("on", False, "bwrap: no user namespaces here")
    sandboxing.publish_worker_status("w1@elsewhere", broken, ttl_s=30)
    response = client.get("/readyz")
    assert response.status_code == 503
    detail = response.json()["checks"]["sandbox"]["detail"]
    assert detail.endswith(
        "no worker can build a sandbox: w1@elsewhere: bwrap: no user namespaces here"
    )
    sandboxing.publish_worker_status("w2@elsewhere", sandboxing.local_status(), ttl_s=30)
    assert client.get("/readyz").status_code == 200


@pytest.fixture
def fake_model() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


# The attempt's events are written from the process's run hub, a thread with its own
# database connection: what the test sets up must be committed.
IN_PROCESS = pytest.mark.django_db(transaction=True)


def run_in_process(task, fake_model: FakeAnthropic, workspace_root: Path, **settings):
    assert claim_task(task, worker="test-worker")
    with override_settings(
        AGENT_CLI=str(CLAUDE),
        ANTHROPIC_BASE_URL=fake_model.base_url,
        ANTHROPIC_API_KEY="sk-ant-test-in-process",
        AGENT_WORKSPACE_ROOT=workspace_root,
        **settings,
    ):
        return execute_claimed_task(task)


@IN_PROCESS
def test_an_attempt_whose_sandbox_is_refused_is_transient_and_never_runs_unsandboxed(
    fake_model, scripts_dir
):
    fake_model.script("[caged]", Text("should never be asked"))
    task = make_task(make_user("caged"), prompt="[caged] hello")
    bwrap = fake_bwrap(scripts_dir, fail_runs_only=True)
    status = run_in_process(task, fake_model, scripts_dir, AGENT_SANDBOX_BWRAP=str(bwrap))
    task.refresh_from_db()
    assert status == TaskStatus.QUEUED  # a retry with backoff, attempts left
    assert task.error == f"The sandbox could not be started: {NO_NAMESPACE}"
    assert fake_model.requests() == []


@IN_PROCESS
def test_an_attempt_with_bubblewrap_missing_is_transient_naming_it(fake_model, scripts_dir):
    task = make_task(make_user("nobwrap"), prompt="[caged] hello")
    status = run_in_process(
        task, fake_model, scripts_dir, AGENT_SANDBOX_BWRAP=str(scripts_dir / "gone")
    )
    task.refresh_from_db()
    assert status == TaskStatus.QUEUED  # transient: retried, never run without one
    assert task.error.startswith("The sandbox could not be started: ")
    assert "gone" in task.error
    assert fake_model.requests() == []


@IN_PROCESS
def test_git_in_a_used_workspace_never_runs_unsandboxed(fake_model, scripts_dir):
    """git in a workspace an agent had its hands on runs in a sandbox of its own: when
    that one cannot start, the attempt is transient, and the agent never runs."""
    task = make_task(make_user("nogit"), prompt="[caged] hello")
    with override_settings(AGENT_WORKSPACE_ROOT=str(scripts_dir)):
        (workspace_path(task.session) / "left.txt").write_text("by an agent")
    real = sandboxing.bwrap_path()
    bwrap = scripts_dir / "bwrap-no-git"  # refuses the sandbox for git (it binds by path)
    refuse = f'echo "{NO_NAMESPACE}" >&2; exit 1'
    bwrap.write_text(f'#!/bin/sh\ncase "$*" in *" --bind "*) {refuse};; esac\nexec {real} "$@"\n')
    bwrap.chmod(0o755)
    status = run_in_process(task, fake_model, scripts_dir, AGENT_SANDBOX_BWRAP=str(bwrap))
    task.refresh_from_db()
    assert status == TaskStatus.QUEUED
    assert task.error.startswith("The sandbox for git could not be started: ")
    assert fake_model.requests() == []


@IN_PROCESS
def test_an_attempt_runs_inside_the_sandbox_in_process(fake_model, scripts_dir):
    fake_model.script("[inproc]", Text("inside"))
    task = make_task(make_user("inproc"), prompt="[inproc] hello")
    assert run_in_process(task, fake_model, scripts_dir) == TaskStatus.SUCCEEDED
    (request,) = fake_model.requests("[inproc]")
    assert request.headers["x-api-key"] == "sk-ant-test-in-process"


@pytest.mark.parametrize(
    "said",
    [
        "bwrap: Creating new namespace failed: Operation not permitted",
        "setpriv: failed to execute /gone/bwrap: No such file or directory",
        "agentsite-sandbox: cannot join the cgroup /sys/fs/cgroup/pids/x/cgroup.procs",
    ],
)
def test_a_sandbox_that_failed_before_the_cli_ran_says_so(said):
    class NoLimitHit:
        def limit_hit(self) -> None:
            return None

    outcome = RunOutcome(
        stop_reason=StopReason.EXITED,
        exit_code=125,
        result=None,
        stderr_tail=f"sh: 1: cannot create x: Permission denied\n{said}\n",
        stdout_lines=0,
        output_bytes=0,
        duration_s=0.01,
        pid=1,
    )
    summary = judge(outcome, NoLimitHit())  # type: ignore[arg-type]
    assert summary.error == f"The sandbox could not be started: {said}"
