"""The model API circuit breaker's states, on the real Redis (one process: no worker)."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
import redis
from django.test import override_settings
from redis.backoff import NoBackoff
from redis.retry import Retry

from cli_exec.claude import Verdict
from tasks_app.services import model_breaker
from tasks_app.services.outcomes import refusal

OVERLOADED = replace(refusal("The model API was unavailable (HTTP 529).", transient=True),
                     api_error_status=529)  # fmt: skip
SUCCEEDED = replace(refusal(""), verdict=Verdict.SUCCEEDED)
OTHER_TRANSIENT = refusal("The sandbox could not be started.", transient=True)


@pytest.fixture(autouse=True)
def fast_breaker():
    with override_settings(
        AGENT_MODEL_BREAKER_THRESHOLD=3,
        AGENT_MODEL_BREAKER_WINDOW_S=60,
        AGENT_MODEL_BREAKER_COOLDOWN_S=0.3,
    ):
        yield


def test_failures_below_the_threshold_count_as_usual_and_the_next_one_opens_it():
    assert [model_breaker.record(OVERLOADED) for _ in range(2)] == [False, False]
    assert model_breaker.state().closed and model_breaker.claim_permit() == (True, 0.0)
    assert model_breaker.record(OVERLOADED) is True  # handed back: attempt kept
    permitted, wait_s = model_breaker.claim_permit()
    assert not permitted and 0 < wait_s <= 0.3
    assert model_breaker.state().degraded_since is not None


def test_other_failures_do_not_count():
    for _ in range(5):
        assert model_breaker.record(OTHER_TRANSIENT) is False
    assert model_breaker.state().closed


def test_after_the_cool_down_one_probe_decides():
    for _ in range(3):
        model_breaker.record(OVERLOADED)
    time.sleep(0.35)
    assert model_breaker.claim_permit() == (True, 0.0)  # the probe
    assert model_breaker.claim_permit()[0] is False  # everyone else waits for it
    # The probe fails: open again for a cool-down, the failure handed back.
    assert model_breaker.record(OVERLOADED) is True
    assert model_breaker.claim_permit()[0] is False
    time.sleep(0.35)
    assert model_breaker.claim_permit() == (True, 0.0)
    model_breaker.probe_done()  # its claim found no task: the next one may probe
    assert model_breaker.claim_permit() == (True, 0.0)
    assert model_breaker.record(SUCCEEDED) is False
    assert model_breaker.state().closed and model_breaker.claim_permit() == (True, 0.0)


def test_without_redis_everything_goes_through(monkeypatch):
    unreachable = redis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    monkeypatch.setattr(model_breaker, "get_quick_redis", lambda: unreachable)
    assert model_breaker.claim_permit() == (True, 0.0)
    assert model_breaker.record(OVERLOADED) is False
