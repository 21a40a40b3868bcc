"""Fixtures for execution-engine tests: the fake model, a worker environment, a worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import AbstractUser

from tests.engine import celery_worker, engine_env, sandbox_reachable_dir
from tests.factories import make_user
from tests.fakes.anthropic_api import FakeAnthropic
from tests.live import LiveProcess


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
