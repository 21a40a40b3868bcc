"""With Redis (cache, channel layer, broker) unreachable, requests and attempts go on."""

from unittest import mock

import pytest
from django.contrib.auth.models import AnonymousUser
from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from rest_framework.test import APIRequestFactory

from tasks_app.api.throttling import FailOpenUserRateThrottle
from tasks_app.services import broadcast, dispatch


def test_the_api_throttle_admits_requests_while_its_cache_is_down():
    request = APIRequestFactory().get("/api/tasks/")
    request.user = AnonymousUser()
    throttle = FailOpenUserRateThrottle()
    with mock.patch.object(throttle.cache, "get", side_effect=RedisConnectionError("refused")):
        assert throttle.allow_request(request, view=None)


def test_a_wakeup_the_broker_cannot_take_is_logged_not_raised():
    with mock.patch.object(
        dispatch.current_app, "send_task", side_effect=OperationalError("refused")
    ) as send:
        dispatch.publish_wakeup()
    send.assert_called_once()


@pytest.fixture(params=["blocking", "event loop"])
def failing_layer(request, monkeypatch):
    """Our pub/sub layer publishes from sync code in the calling thread; any other layer
    (the core one) through the process's event loop."""
    refused = RedisConnectionError("refused")
    if request.param == "blocking":
        layer = mock.Mock(spec=["group_send_blocking"])
        layer.group_send_blocking = mock.Mock(side_effect=refused)
        layer.sends = layer.group_send_blocking
    else:
        layer = mock.Mock(spec=["group_send"])
        layer.group_send = mock.AsyncMock(side_effect=refused)
        layer.sends = layer.group_send
    monkeypatch.setattr(broadcast, "get_channel_layer", lambda: layer)
    monkeypatch.setattr(broadcast, "_pushes_paused_until", 0.0)
    return layer


def test_a_failed_push_pauses_this_process_pushes(failing_layer, monkeypatch):
    broadcast._group_send("task.1", {"type": "task.events"})
    broadcast._group_send("task.1", {"type": "task.events"})
    assert failing_layer.sends.call_count == 1
    # Once the pause is over, pushes are tried again.
    monkeypatch.setattr(broadcast, "_pushes_paused_until", 0.0)
    broadcast._group_send("task.1", {"type": "task.events"})
    assert failing_layer.sends.call_count == 2
