"""Production settings (DJANGO_DEBUG=0): secure cookies, HSTS, TLS behind a proxy.

Settings are read once at start, so each check runs in a fresh process with the
production environment, as a deployment would.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from tasks_app.services.tokens import api_token_create
from tests.factories import make_user
from tests.live import ROOT, child_env, free_port, http_ok, procfile_argv
from tests.ops.conftest import running

HOST = "agents.example.com"
HSTS = "max-age=31536000; includeSubDomains; preload"
SHOWN = [
    "DEBUG",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SESSION_COOKIE_HTTPONLY",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_PROXY_SSL_HEADER",
    "SECURE_CONTENT_TYPE_NOSNIFF",
    "X_FRAME_OPTIONS",
]


def production_env(**overrides: str) -> dict[str, str]:
    return child_env(
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS=f"{HOST},127.0.0.1",
        **overrides,
    )


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_production_settings_pass_check_deploy_without_warnings():
    done = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_production_settings_have_secure_cookies_and_hsts():
    code = (
        "import json; from django.conf import settings; "
        f"print(json.dumps({{name: getattr(settings, name) for name in {SHOWN!r}}}))"
    )
    done = manage("shell", "-c", code, env=production_env())
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout.strip().splitlines()[-1])
    assert shown == {
        "DEBUG": False,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31_536_000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": True,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "SECURE_CONTENT_TYPE_NOSNIFF": True,
        "X_FRAME_OPTIONS": "DENY",
    }


@pytest.fixture
def production_web() -> Iterator[str]:
    port = free_port()
    env = production_env(BIND_HOST="127.0.0.1", PORT=str(port))
    url = f"http://127.0.0.1:{port}"
    with running(
        "web-production", procfile_argv("web", env), env, ready=lambda: http_ok(url + "/healthz")
    ):
        yield url


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_behind_a_tls_proxy_answers_carry_hsts_and_plain_http_is_redirected(production_web):
    _, key = api_token_create(user=make_user("prod-api"), name="tls")
    auth = {"Host": HOST, "Authorization": f"Token {key}"}
    proxied = httpx.get(
        production_web + "/api/tasks/", headers={**auth, "X-Forwarded-Proto": "https"}
    )
    assert proxied.status_code == 200
    assert proxied.headers["Strict-Transport-Security"] == HSTS
    plain = httpx.get(production_web + "/api/tasks/", headers=auth)
    assert plain.status_code == 301
    assert plain.headers["Location"] == f"https://{HOST}/api/tasks/"
    # Probes and scrapers talk plain HTTP on loopback.
    assert httpx.get(production_web + "/healthz", headers={"Host": HOST}).status_code == 200
