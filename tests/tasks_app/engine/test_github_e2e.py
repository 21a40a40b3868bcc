"""A signed GitHub comment, end to end: real web server, worker, CLI, fake GitHub and model."""

import httpx
import pytest

from tasks_app.models import AgentSession, GitHubRepository, Task, TaskStatus, WebhookDelivery
from tests.engine import celery_worker, engine_env, wait_for_status
from tests.fakes.anthropic_api import Text
from tests.fakes.github_api import FakeGitHub
from tests.live import asgi_server, wait_until
from tests.tasks_app.github.payloads import REPO, SECRET, encode, headers, issue_comment

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
TOKEN = "ghp_e2e_token_abcdef123456"


@pytest.fixture
def fake_github():
    with FakeGitHub(token=TOKEN, bot_login="agentsite-bot[bot]") as fake:
        fake.create_repository(REPO)
        fake.set_permission(REPO, "alice", "write")
        yield fake


def github_env(fake_model, fake_github, workspace_root) -> dict[str, str]:
    return engine_env(
        fake_model.base_url,
        workspace_root,
        GITHUB_WEBHOOK_SECRET=SECRET,
        GITHUB_TOKEN=TOKEN,
        GITHUB_API_URL=fake_github.base_url,
        AGENT_GITHUB_BOT_LOGIN="agentsite-bot[bot]",
        AGENTSITE_PUBLIC_URL="https://agents.example.com",
    )


def deliver(url: str, payload: dict) -> httpx.Response:
    body = encode(payload)
    return httpx.post(f"{url}/webhooks/github/", content=body, headers=headers(body), timeout=10)


def test_comment_to_acknowledgement_to_outcome_and_a_resumed_follow_up(
    fake_model, fake_github, owner, workspace_root
):
    GitHubRepository.objects.create(full_name=REPO, owner=owner)
    fake_model.script(
        "please fix the failing test", Text("Fixed: the assertion was off by one."), Text("Yes.")
    )
    env = github_env(fake_model, fake_github, workspace_root)
    with asgi_server(env) as (url, _), celery_worker(env, concurrency=2):
        response = deliver(url, issue_comment("@claude please fix the failing test"))
        assert response.status_code == 202
        first = wait_until(lambda: Task.objects.first(), 30, "the task")
        first = wait_for_status(first.pk, TaskStatus.terminal())
        assert first.status == TaskStatus.SUCCEEDED, first.error
        edited = wait_until(
            lambda: [c for c in fake_github.comments(repo=REPO, number=7) if c["history"]],
            30,
            "the acknowledgement to be edited",
        )
        (comment,) = edited
        assert "On it" in comment["history"][0]
        assert f"https://agents.example.com/tasks/{first.pk}/" in comment["history"][0]
        assert comment["body"].startswith("✅ Done")
        assert "Fixed: the assertion was off by one." in comment["body"]

        follow_up = issue_comment("@claude did that also cover the edge case?")
        assert deliver(url, follow_up).status_code == 202
        second = wait_until(lambda: Task.objects.exclude(pk=first.pk).first(), 30, "task 2")
        second = wait_for_status(second.pk, TaskStatus.terminal())
        wait_until(
            lambda: (
                len([c for c in fake_github.comments(repo=REPO, number=7) if c["history"]]) == 2
            ),
            30,
            "the second acknowledgement to be edited",
        )
    assert second.status == TaskStatus.SUCCEEDED and second.session_id == first.session_id
    assert AgentSession.objects.count() == 1
    resumed = fake_model.requests("please fix the failing test")[-1]
    assert "Fixed: the assertion was off by one." in str(resumed.messages)
    assert "did that also cover the edge case?" in str(resumed.messages)
    assert (
        WebhookDelivery.objects.filter(outcome="accepted", processed_at__isnull=False).count() == 2
    )
