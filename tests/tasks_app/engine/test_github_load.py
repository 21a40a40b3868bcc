"""1,000 deliveries sent concurrently to the real web server: each answered as the table
says, and exactly one task per valid unique delivery."""

import asyncio
import random
import statistics
import time
import uuid
from dataclasses import dataclass

import httpx
import pytest

from tasks_app.models import DeliveryOutcome, GitHubRepository, Task, WebhookDelivery
from tests.engine import celery_worker, engine_env
from tests.fakes.github_api import FakeGitHub
from tests.live import asgi_server, wait_until
from tests.tasks_app.github.payloads import REPO, SECRET, encode, headers, issue_comment

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
TOKEN = "ghp_load_token_abcdef123456"
CONCURRENCY = 100


@dataclass
class Delivery:
    kind: str
    body: bytes
    headers: dict[str, str]
    delivery_id: str


def signed(kind: str, payload_or_body, *, event="issue_comment", delivery_id=None) -> Delivery:
    body = payload_or_body if isinstance(payload_or_body, bytes) else encode(payload_or_body)
    delivery_id = delivery_id or str(uuid.uuid4())
    return Delivery(kind, body, headers(body, event=event, delivery=delivery_id), delivery_id)


def mixed_deliveries(rng: random.Random) -> list[Delivery]:
    valid = [signed("valid", issue_comment(f"@claude job {n}", number=n)) for n in range(1, 301)]
    duplicates = [Delivery("duplicate", d.body, d.headers, d.delivery_id) for d in valid[:150]]
    forged = []
    for n in range(200):
        delivery = signed("forged", issue_comment(number=1000 + n))
        if n < 150:
            delivery.headers["X-Hub-Signature-256"] = headers(delivery.body, secret="guess")[
                "X-Hub-Signature-256"
            ]
        else:
            del delivery.headers["X-Hub-Signature-256"]
        forged.append(delivery)
    oversized = [signed("oversized", b"{" + b" " * 1_100_000 + b"}") for _ in range(50)]
    malformed = [
        signed("malformed", b'{"action": "created", ' + bytes([n % 256])) for n in range(100)
    ]
    ignored = (
        [signed("ignored", issue_comment("no mention here", number=2000 + n)) for n in range(100)]
        + [signed("ignored", {"ref": "main", "repository": {"full_name": REPO}}, event="push")] * 1
        + [signed("ignored", {"ref": f"r{n}"}, event="push") for n in range(49)]
        + [signed("ignored", issue_comment(author=f"bot{n}[bot]")) for n in range(50)]
    )
    everything = valid + duplicates + forged + oversized + malformed + ignored
    assert len(everything) == 1000
    rng.shuffle(everything)
    return everything


async def send_all(url: str, deliveries: list[Delivery]) -> list[tuple[Delivery, int, dict, float]]:
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    gate = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def send(delivery: Delivery) -> tuple[Delivery, int, dict, float]:
            async with gate:
                started = time.perf_counter()
                response = await client.post(
                    "/webhooks/github/", content=delivery.body, headers=delivery.headers
                )
                elapsed = time.perf_counter() - started
            try:
                body = response.json()
            except ValueError:
                body = {"not_json": response.text[:300]}
            return delivery, response.status_code, body, elapsed

        return await asyncio.gather(*(send(d) for d in deliveries))


EXPECTED = {"forged": 401, "oversized": 413, "malformed": 400, "ignored": 200}


def test_1000_mixed_concurrent_deliveries(fake_model, owner, workspace_root):
    GitHubRepository.objects.create(full_name=REPO, owner=owner)
    deliveries = mixed_deliveries(random.Random(20261125))
    env = engine_env(
        fake_model.base_url, workspace_root,
        GITHUB_WEBHOOK_SECRET=SECRET, GITHUB_TOKEN=TOKEN,
        AGENT_GITHUB_RATE_PER_REPO="100000/hour", AGENT_GITHUB_RATE_PER_SENDER="100000/hour",
        AGENT_MAX_QUEUED_PER_USER="100000",
    )  # fmt: skip
    with FakeGitHub(token=TOKEN) as github:
        github.set_permission(REPO, "alice", "write")
        env["GITHUB_API_URL"] = github.base_url
        # Only the GitHub jobs run: the 300 agent tasks stay queued, to be counted.
        with asgi_server(env) as (url, _), celery_worker(env, concurrency=4, queues="github"):
            answers = asyncio.run(send_all(url, deliveries))
            accepted_ids = {d.delivery_id for d, status, _, _ in answers if status == 202}
            wait_until(
                lambda: (
                    WebhookDelivery.objects.filter(
                        outcome=DeliveryOutcome.ACCEPTED, processed_at__isnull=False
                    ).count()
                    == 300
                ),
                120,
                "300 deliveries to be processed",
            )
    by_id: dict[str, list[int]] = {}
    for delivery, status, body, _ in answers:
        if delivery.kind in EXPECTED:
            assert status == EXPECTED[delivery.kind], (delivery.kind, status, body)
            if delivery.kind == "ignored":
                assert body["outcome"] == "ignored" and body["reason"]
        else:
            by_id.setdefault(delivery.delivery_id, []).append(status)
    assert len(by_id) == 300
    for statuses in by_id.values():
        assert sorted(statuses) in ([202], [200, 202])
    assert len(accepted_ids) == 300
    tasks = Task.objects.all()
    assert tasks.count() == 300
    linked = WebhookDelivery.objects.filter(task__isnull=False)
    assert set(linked.values_list("delivery_id", flat=True)) == accepted_ids
    assert linked.values("task").distinct().count() == 300
    times = sorted(elapsed * 1000 for *_, elapsed in answers)
    p50, p99 = statistics.median(times), times[int(len(times) * 0.99) - 1]
    print(f"\n1000 mixed deliveries, {CONCURRENCY} concurrent: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
