import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from tasks_app.models import ApiToken
from tasks_app.services.tokens import api_token_create, api_token_revoke, digest_of


def test_token_is_stored_only_as_digest(user):
    token, key = api_token_create(user=user)
    stored = ApiToken.objects.get(pk=token.pk)
    assert stored.digest == digest_of(key)
    assert key not in {stored.digest, stored.prefix, stored.name}
    assert key.startswith(stored.prefix)


def test_create_api_token_command_prints_a_working_token(user, capsys):
    call_command("create_api_token", user.username)
    key = capsys.readouterr().out.strip()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/tasks/").status_code == 200


def test_create_api_token_for_unknown_user_fails(db):
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        call_command("create_api_token", "nobody")


def test_revoked_token_is_401(user):
    token, key = api_token_create(user=user)
    api_token_revoke(token=token)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/tasks/").status_code == 401


def test_token_of_inactive_user_is_401(user):
    _, key = api_token_create(user=user)
    user.is_active = False
    user.save()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/tasks/").status_code == 401


@pytest.mark.parametrize("header", ["Token", "Token a b", "Token  "])
def test_malformed_token_header_is_401(db, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/tasks/")
    assert response.status_code == 401
