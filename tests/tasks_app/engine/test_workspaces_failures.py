"""Git workspaces when things go wrong: each a clear outcome, nothing lost."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings

from tasks_app.models import GitHubRepository, Source, Task, TaskStatus
from tasks_app.services.tasks import task_create
from tests.conftest import token_client
from tests.engine import celery_worker, sandbox_reachable_dir, wait_for_status
from tests.fakes.github_api import Fault
from tests.tasks_app.engine.git_helpers import TOKEN, bash, git_env
from tests.tasks_app.github.payloads import REPO

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = TaskStatus


def run_task(owner, prompt: str, **fields) -> Task:
    task = task_create(owner=owner, prompt=prompt, source=Source.API, **fields)
    return wait_for_status(task.pk, S.terminal(), timeout_s=90)


def test_a_repository_missing_on_github_fails_at_once_naming_it(
    fake_model, hosted_github, owner, workspace_root
):
    GitHubRepository.objects.create(full_name="acme/ghost", owner=owner)
    with celery_worker(git_env(fake_model, hosted_github, workspace_root)):
        task = run_task(owner, "[ghost] hi", repository="acme/ghost")
    assert task.status == S.FAILED and task.attempts == 1
    assert task.error.startswith("The repository acme/ghost is missing or the worker's token")
    assert fake_model.requests() == []  # the agent never ran


def test_github_answering_5xx_is_retried_and_then_succeeds(
    fake_model, hosted_github, owner, registered, workspace_root
):
    hosted_github.script(Fault("GET", f"/repos/{REPO}", status=503))
    hosted_github.script(Fault("POST", f"/{REPO}.git/git-upload-pack", status=500))
    fake_model.script("[flaky]", *bash("echo ok > ok.txt"))
    with celery_worker(git_env(fake_model, hosted_github, workspace_root)):
        task = run_task(owner, "[flaky] hi", repository=REPO)
    assert task.status == S.SUCCEEDED, task.error
    assert task.attempts == 3  # GitHub's 503, then git's 500, then through
    assert hosted_github.read_file(REPO, task.branch, "ok.txt") == "ok\n"


def test_a_missing_base_branch_is_400_at_creation(hosted_github, owner, registered):
    with override_settings(GITHUB_API_URL=hosted_github.base_url, GITHUB_TOKEN=TOKEN):
        response = token_client(owner).post(
            "/api/tasks/", {"prompt": "hi", "repository": REPO, "base": "nope"}, format="json"
        )
    assert response.status_code == 400
    assert response.json() == {"base": [f"The branch nope does not exist in {REPO}."]}
    assert not Task.objects.exists()


def test_an_unregistered_repository_is_400_naming_it(owner):
    response = token_client(owner).post(
        "/api/tasks/", {"prompt": "hi", "repository": "someone/else"}, format="json"
    )
    assert response.status_code == 400
    assert "someone/else is not a registered repository" in response.json()["repository"][0]


def test_a_base_branch_unknown_at_creation_fails_the_task_naming_it(
    fake_model, hosted_github, owner, registered, workspace_root
):
    # GitHub was unreachable when the task was created, so the base went unchecked.
    with override_settings(GITHUB_API_URL="http://127.0.0.1:9", GITHUB_TOKEN=TOKEN):
        task = task_create(
            owner=owner, prompt="[nobase] hi", source=Source.API, repository=REPO, base="gone"
        )
    with celery_worker(git_env(fake_model, hosted_github, workspace_root)):
        task = wait_for_status(task.pk, S.terminal(), timeout_s=60)
    assert task.status == S.FAILED and task.attempts == 1
    assert task.error == f"The base branch gone does not exist in {REPO}."


@contextlib.contextmanager
def tiny_filesystem(size: str) -> Iterator[Path]:
    """A workspace root that fills up: a tmpfs of `size`, unmounted afterwards."""
    with sandbox_reachable_dir("full") as root:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0711", "tmpfs", str(root)],
                       check=True)  # fmt: skip
        try:
            yield root
        finally:
            subprocess.run(["umount", "-l", str(root)], check=True)


def test_a_full_workspace_root_fails_the_task_naming_it_and_the_worker_lives_on(
    fake_model, hosted_github, owner, registered
):
    # Random bytes do not compress: the clone cannot fit.
    hosted_github.commit_files(REPO, "main", {"blob.txt": os.urandom(3_000_000).hex()}, "Big.")
    with tiny_filesystem("2m") as root:
        with celery_worker(git_env(fake_model, hosted_github, root)) as worker:
            task = run_task(owner, "[full] hi", repository=REPO)
            assert worker.process.poll() is None
    assert task.status == S.FAILED and task.attempts == 1
    assert task.error.startswith("The workspace root is full")
    assert "No space left on device" in task.error


def test_a_scratch_history_over_the_limit_is_not_saved_and_the_task_says_so(
    fake_model, hosted_github, owner, workspace_root
):
    fake_model.script("[huge]", *bash("head -c 200000 /dev/urandom > noise.bin", "Noise."))
    env = git_env(fake_model, hosted_github, workspace_root, AGENT_WORKSPACE_MAX_BYTES="100000")
    with celery_worker(env):
        task = run_task(owner, "[huge] make noise")
    assert task.status == S.SUCCEEDED, task.error
    assert task.workspace_note.startswith("The workspace was not saved: its history is 0.2 MiB")
    assert task.session.workspace_bundle is None
