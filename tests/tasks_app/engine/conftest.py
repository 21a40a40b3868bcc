"""Fixtures for execution-engine tests: the fake model, a worker environment, a worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import AbstractUser

from tasks_app.models import GitHubRepository
from tests.engine import celery_worker, engine_env, sandbox_reachable_dir
from tests.factories import make_user
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.github_api import FakeGitHub
from tests.live import LiveProcess
from tests.tasks_app.engine.git_helpers import BOT, REPO_FILES, TOKEN
from tests.tasks_app.github.payloads import REPO


@pytest.fixture
def fake_model() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def workspace_root() -> Iterator[Path]:
    with sandbox_reachable_dir("workspaces") as root:
        yield root


@pytest.fixture
def worker_env(fake_model: FakeAnthropic, workspace_root: Path) -> dict[str, str]:
    return engine_env(fake_model.base_url, workspace_root)


@pytest.fixture
def worker(transactional_db: None, worker_env: dict[str, str]) -> Iterator[LiveProcess]:
    with celery_worker(worker_env, concurrency=2) as live:
        yield live


@pytest.fixture
def owner(transactional_db: None) -> AbstractUser:
    return make_user("agent-owner")


# --- git workspaces: a fake GitHub hosting the repository, another machine's root ---


@pytest.fixture
def hosted_github() -> Iterator[FakeGitHub]:
    with FakeGitHub(token=TOKEN, bot_login=BOT) as fake:
        fake.create_repository(REPO, files=REPO_FILES)
        fake.set_permission(REPO, "alice", "write")
        yield fake


@pytest.fixture
def registered(owner) -> GitHubRepository:
    return GitHubRepository.objects.create(full_name=REPO, owner=owner)


@pytest.fixture
def second_root() -> Iterator[Path]:
    """Another machine's workspace root: empty, nothing shared with the first."""
    with sandbox_reachable_dir("second-machine") as root:
        yield root
