import httpx
import pytest
from django.test import override_settings

from tests.live import asgi_server, child_env, free_port


def test_healthz_is_200_while_process_lives(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_200_when_every_dependency_answers(client):
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["failing"] == []
    assert set(body["checks"]) == {"database", "redis", "broker", "cli", "sandbox", "model_api"}
    assert "Claude Code" in body["checks"]["cli"]["detail"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("setting", "failing"),
    [("REDIS_URL", "redis"), ("CELERY_BROKER_URL", "broker")],
)
def test_readyz_names_a_dead_redis_or_broker(client, setting, failing):
    with override_settings(**{setting: f"redis://127.0.0.1:{free_port()}/0"}):
        response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 503
    assert body["failing"] == [failing]
    assert "onnect" in body["checks"][failing]["detail"]


@pytest.mark.django_db
def test_readyz_names_a_dead_amqp_broker(client):
    with override_settings(CELERY_BROKER_URL=f"amqp://guest:guest@127.0.0.1:{free_port()}//"):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["broker"]


@pytest.mark.django_db
def test_readyz_names_a_cli_that_does_not_run(client, tmp_path):
    with override_settings(AGENT_CLI=str(tmp_path / "no-such-claude")):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["cli"]


@pytest.mark.integration
@pytest.mark.django_db
def test_readyz_names_a_dead_database_while_healthz_stays_up():
    dead_db = f"postgres://postgres@127.0.0.1:{free_port()}/agentsite"
    with asgi_server(child_env(DATABASE_URL=dead_db), name="web-dead-db") as (url, _):
        assert httpx.get(url + "/healthz").status_code == 200
        response = httpx.get(url + "/readyz", timeout=30)
    assert response.status_code == 503
    assert response.json()["failing"] == ["database"]
