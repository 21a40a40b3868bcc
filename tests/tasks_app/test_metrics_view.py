import pytest

from tests.factories import make_task

URL = "/metrics"


@pytest.mark.django_db
def test_metrics_from_loopback_show_tasks_by_status_and_queues(client, user):
    make_task(user)
    body = client.get(URL, REMOTE_ADDR="127.0.0.1").content.decode()
    assert 'agentsite_tasks{status="queued"} 1.0' in body
    assert 'agentsite_tasks{status="succeeded"} 0.0' in body
    assert 'agentsite_queue_depth{queue="agent"}' in body
    assert "agentsite_task_run_seconds" in body


@pytest.mark.django_db
def test_metrics_refuse_other_addresses_without_the_token(client):
    response = client.get(URL, REMOTE_ADDR="10.1.2.3")
    assert response.status_code == 403
    assert "METRICS_TOKEN" in response.json()["detail"]


@pytest.mark.django_db
def test_metrics_refuse_requests_a_proxy_forwarded(client):
    response = client.get(URL, REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert response.status_code == 403


@pytest.mark.django_db
def test_metrics_accept_the_bearer_token_from_anywhere(client, settings):
    settings.METRICS_TOKEN = "scrape-secret-123"
    ok = client.get(URL, REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer scrape-secret-123")
    assert ok.status_code == 200
    wrong = client.get(URL, REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 403
