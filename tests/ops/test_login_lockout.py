"""Brute-force protection on the login form (django-axes: AXES_FAILURE_LIMIT per user and IP)."""

import pytest
from django.conf import settings

from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db
LOGIN = "/accounts/login/"
LOCKED = "Account locked: too many login attempts"


def log_in(client, username: str, password: str):
    return client.post(LOGIN, {"username": username, "password": password})


def fail_until_the_limit(client, username: str) -> None:
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, username, "not-the-password")


def test_after_the_failure_limit_even_the_right_password_is_refused(client):
    user = make_user("lockout-target")
    fail_until_the_limit(client, user.username)
    response = log_in(client, user.username, PASSWORD)
    assert response.status_code == 429
    assert LOCKED in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_one_failure_short_of_the_limit_the_right_password_still_works(client):
    user = make_user("almost-locked")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert log_in(client, user.username, "not-the-password").status_code == 200
    response = log_in(client, user.username, PASSWORD)
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)


def test_a_locked_username_does_not_lock_other_users_from_the_same_address(client):
    fail_until_the_limit(client, make_user("locked-one").username)
    other = make_user("unaffected")
    response = log_in(client, other.username, PASSWORD)
    assert response.status_code == 302
