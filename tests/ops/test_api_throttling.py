"""Per-user API throttling (DRF UserRateThrottle, counters in the Redis cache)."""

import pytest
from django.core.cache import cache
from rest_framework.throttling import UserRateThrottle

from tests.conftest import token_client
from tests.factories import make_user

pytestmark = pytest.mark.django_db
RATE = 3


@pytest.fixture
def low_rate(monkeypatch):
    # DRF copies DEFAULT_THROTTLE_RATES into a class attribute at import time, so
    # override_settings alone would not reach it.
    monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", {"user": f"{RATE}/minute"})


def fresh_user(name: str):
    user = make_user(name)
    cache.delete(f"throttle_user_{user.pk}")  # ids repeat across test databases
    return user


def test_user_over_the_rate_gets_429_with_retry_after_and_others_do_not(low_rate):
    greedy, other = token_client(fresh_user("greedy")), token_client(fresh_user("patient"))
    assert [greedy.get("/api/tasks/").status_code for _ in range(RATE)] == [200] * RATE
    refused = greedy.get("/api/tasks/")
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 60
    assert "throttled" in refused.json()["detail"].lower()
    assert other.get("/api/tasks/").status_code == 200
