"""POST /webhooks/github/ answers exactly as DESIGN.md's table says, and records all."""

from unittest import mock

import pytest
from django.test import Client

from tasks_app.models import DeliveryOutcome, GitHubRepository, WebhookDelivery
from tests.concurrency import race
from tests.factories import make_user
from tests.tasks_app.github.payloads import REPO, SECRET, encode, headers, issue_comment, user

URL = "/webhooks/github/"


@pytest.fixture(autouse=True)
def configured(settings):
    settings.GITHUB_WEBHOOK_SECRET = SECRET
    settings.AGENT_GITHUB_BOT_LOGIN = "agentsite-bot"


@pytest.fixture
def repo(db):
    return GitHubRepository.objects.create(full_name=REPO, owner=make_user("maintainer"))


@pytest.fixture
def sent():
    with mock.patch("tasks_app.services.dispatch.current_app.send_task") as send_task:
        yield send_task


def post(client, payload=None, *, body=None, event="issue_comment", delivery=None, **extra):
    body = body if body is not None else encode(payload)
    hdrs = headers(body, event=event, delivery=delivery)
    hdrs.update(extra)
    meta = {
        f"HTTP_{k.upper().replace('-', '_')}": v for k, v in hdrs.items() if k != "Content-Type"
    }
    return client.post(URL, body, content_type="application/json", **meta)


def test_without_secret_is_503_and_recorded(client, settings, db):
    settings.GITHUB_WEBHOOK_SECRET = ""
    response = post(client, issue_comment())
    assert response.status_code == 503
    assert WebhookDelivery.objects.get().reason.startswith("secret unset")


def test_body_over_1_mib_is_413(client, db):
    response = post(client, body=b" " * (1_048_576 + 1))
    assert response.status_code == 413
    assert WebhookDelivery.objects.get().outcome == DeliveryOutcome.REJECTED


def test_declared_length_over_1_mib_is_413_without_reading_the_body(db):
    from tasks_app.webhooks.github import github_webhook

    request = mock.Mock(
        META={"CONTENT_LENGTH": str(2_000_000)},
        headers={"X-GitHub-Delivery": "d", "X-GitHub-Event": "issue_comment"},
        method="POST",
    )
    type(request).body = mock.PropertyMock(side_effect=AssertionError("body was read"))
    assert github_webhook.__wrapped__(request).status_code == 413


@pytest.mark.parametrize(
    ("signature", "detail"),
    [(None, "missing"), ("sha256=" + "0" * 64, "wrong"), ("sha1=abc", "wrong")],
)
def test_missing_or_wrong_signature_is_401(client, repo, sent, signature, detail):
    body = encode(issue_comment())
    meta = {"HTTP_X_GITHUB_EVENT": "issue_comment", "HTTP_X_GITHUB_DELIVERY": "d-1"}
    if signature:
        meta["HTTP_X_HUB_SIGNATURE_256"] = signature
    response = client.post(URL, body, content_type="application/json", **meta)
    assert response.status_code == 401
    assert detail in response.json()["detail"]
    recorded = WebhookDelivery.objects.get()
    assert (
        recorded.outcome == DeliveryOutcome.REJECTED and "claimed delivery d-1" in recorded.reason
    )
    assert not sent.called


def test_rejected_request_cannot_squat_on_a_later_real_delivery_id(client, repo, sent):
    body = encode(issue_comment())
    client.post(URL, body, content_type="application/json", HTTP_X_GITHUB_DELIVERY="same")
    assert post(client, issue_comment(), delivery="same").status_code == 202


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_signed_non_json_is_400(client, db, body):
    response = post(client, body=body)
    assert response.status_code == 400
    assert WebhookDelivery.objects.get().reason.startswith("not JSON")


def test_ping_is_200(client, db):
    response = post(client, {"zen": "Keep it logically awesome.", "hook_id": 1}, event="ping")
    assert response.status_code == 200
    assert WebhookDelivery.objects.get().reason == "ping"


def test_trigger_is_202_recorded_and_enqueued_after_commit(
    client, repo, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, issue_comment(), delivery="abc-1")
    assert response.status_code == 202
    assert response.json() == {"outcome": "accepted", "delivery": "abc-1"}
    delivery = WebhookDelivery.objects.get()
    assert (delivery.outcome, delivery.repository, delivery.sender) == (
        DeliveryOutcome.ACCEPTED,
        REPO,
        "alice",
    )
    sent.assert_called_once_with(
        "tasks_app.github.process_delivery", args=[delivery.pk], queue="github"
    )


def test_same_delivery_again_is_200_duplicate_and_counted(client, repo, sent):
    assert post(client, issue_comment(), delivery="dup-1").status_code == 202
    response = post(client, issue_comment(), delivery="dup-1")
    assert response.status_code == 200 and response.json()["outcome"] == "duplicate"
    delivery = WebhookDelivery.objects.get(delivery_id="dup-1")
    assert delivery.duplicates == 1 and delivery.outcome == DeliveryOutcome.ACCEPTED


@pytest.mark.parametrize(
    ("event", "payload", "reason"),
    [
        ("push", {"ref": "main", "repository": {"full_name": REPO}}, "push.- does not start tasks"),
        ("issue_comment", issue_comment(action="edited"), "issue_comment.edited does not"),
        ("issue_comment", issue_comment("please fix it"), "no trigger phrase"),
        ("issue_comment", issue_comment("@claudette fix it"), "no trigger phrase"),
        ("issue_comment", issue_comment(author="dependabot[bot]"), "not a user"),
        ("issue_comment", issue_comment(author="ci", author_type="Bot"), "not a user"),
        ("issue_comment", issue_comment(author="agentsite-bot"), "own comment"),
        ("issue_comment", issue_comment(repo="other/repo"), "repository not registered"),
        ("issue_comment", issue_comment("@claude " + "x" * 10_300), "comment over 10 KB"),
    ],
)
def test_non_triggers_are_200_ignored_with_a_reason(client, repo, sent, event, payload, reason):
    response = post(client, payload, event=event)
    assert response.status_code == 200
    body = response.json()
    assert body["outcome"] == "ignored" and reason in body["reason"]
    assert reason in WebhookDelivery.objects.get().reason
    assert not sent.called


def test_disabled_repository_is_ignored(client, repo, sent):
    GitHubRepository.objects.update(enabled=False)
    assert post(client, issue_comment()).json()["reason"] == "repository disabled"


def issue_opened() -> dict:
    payload = issue_comment()
    issue = {**payload["issue"], "body": "@claude triage this", "user": user("alice")}
    return {**payload, "action": "opened", "issue": issue}


def review_comment() -> dict:
    return {
        "action": "created",
        "pull_request": {"number": 3, "title": "Add x", "html_url": f"https://github.com/{REPO}"},
        "comment": {"id": 9, "body": "@Claude tidy this up", "user": user("alice")},
        "repository": {"full_name": REPO},
        "sender": user("alice"),
    }


@pytest.mark.parametrize(
    ("event", "payload"),
    [("issues", issue_opened()), ("pull_request_review_comment", review_comment())],
)
def test_other_trigger_events_are_accepted(client, repo, sent, event, payload):
    assert post(client, payload, event=event).status_code == 202


def test_get_is_405(client, db):
    assert client.get(URL).status_code == 405


@pytest.mark.django_db(transaction=True)
def test_concurrent_copies_of_one_delivery_accept_exactly_one(sent):
    GitHubRepository.objects.create(full_name=REPO, owner=make_user("maintainer"))
    statuses = race(8, lambda _: post(Client(), issue_comment(), delivery="race-1").status_code)
    assert sorted(statuses) == [200] * 7 + [202]
    assert WebhookDelivery.objects.get(delivery_id="race-1").duplicates == 7
