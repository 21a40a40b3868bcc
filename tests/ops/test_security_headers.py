"""Security headers on pages and API answers; CSRF on every form; the admin is staff-only."""

import re

import pytest
from django.test import Client

from tests.conftest import token_client
from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
POST_FORM = re.compile(r"<form\b[^>]*\bmethod=[\"']post[\"'][^>]*>(.*?)</form>", re.S | re.I)
CSRF_INPUT = re.compile(r"<input\b[^>]*name=[\"']csrfmiddlewaretoken[\"'][^>]*\bvalue=\"\w+\"")


def assert_security_headers(response) -> None:
    assert {name: response.get(name) for name in HEADERS} == HEADERS


def test_api_answers_carry_the_security_headers(user):
    assert_security_headers(token_client(user).get("/api/tasks/"))


def test_dashboard_pages_carry_the_security_headers(client, user):
    client.force_login(user)
    response = client.get("/")
    assert response.status_code == 200
    assert_security_headers(response)


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_every_post_form_on_the_login_pages_carries_a_csrf_token(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert_security_headers(response)
    forms = POST_FORM.findall(response.content.decode())
    assert forms
    assert all(CSRF_INPUT.search(form) for form in forms)


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_login_post_without_a_csrf_token_is_refused(path):
    user = make_user("csrf-victim")
    client = Client(enforce_csrf_checks=True)
    client.get(path)  # a csrftoken cookie, but no token in the form
    response = client.post(path, {"username": user.username, "password": PASSWORD})
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session


def test_admin_sends_a_non_staff_user_to_the_admin_login(client, user):
    client.force_login(user)
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/admin/"


def test_admin_opens_for_staff(client):
    client.force_login(make_user("staffer", is_staff=True, is_superuser=True))
    assert client.get("/admin/").status_code == 200


def test_pages_carry_a_strict_content_security_policy(client, user):
    client.force_login(user)
    policy = client.get("/")["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy
    assert "frame-ancestors 'none'" in policy


def test_only_the_swagger_page_goes_without_the_policy(client):
    assert "Content-Security-Policy" not in client.get("/api/docs/")
    assert "Content-Security-Policy" in client.get("/accounts/login/")
