"""Fixtures shared by the whole suite: users, authenticated API clients."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import AbstractUser
from rest_framework.test import APIClient

from tasks_app.services import model_breaker
from tasks_app.services.tokens import api_token_create
from tests.factories import make_user


def pytest_configure(config: pytest.Config) -> None:
    # WhiteNoise warns on every request when collectstatic has never run.
    (Path(settings.STATIC_ROOT)).mkdir(parents=True, exist_ok=True)
    # Test users need no brute-force resistance; PBKDF2 would cost ~0.3 s per user.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session", autouse=True)
def clean_redis() -> None:
    """Start from an empty Redis DB: no throttle counters, flags or messages of old runs."""
    redis.Redis.from_url(settings.REDIS_URL).flushdb()


@pytest.fixture(autouse=True)
def closed_model_breaker() -> None:
    """Each test meets a model API the service trusts: model failures of earlier tests
    (the breaker counts them across workers for a minute) must not open it here."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter(match=f"{model_breaker.PREFIX}*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def user(db: None) -> AbstractUser:
    return make_user("alice")


@pytest.fixture
def other_user(db: None) -> AbstractUser:
    return make_user("bob")


def token_client(user: AbstractUser) -> APIClient:
    _, key = api_token_create(user=user, name="tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture
def api(user: AbstractUser) -> APIClient:
    """An API client authenticated as `user` with a real token."""
    return token_client(user)


@pytest.fixture
def other_api(other_user: AbstractUser) -> APIClient:
    return token_client(other_user)
