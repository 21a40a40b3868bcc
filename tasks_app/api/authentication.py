"""`Authorization: Token <key>` for the REST API."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from tasks_app.models import ApiToken
from tasks_app.services.tokens import api_token_authenticate

KEYWORD = "Token"


def token_from_header(value: str) -> str | None:
    """The key of a `Token <key>` header value, or None when it is not one."""
    parts = value.split()
    if len(parts) != 2 or parts[0] != KEYWORD:
        return None
    return parts[1]


class ApiTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[object, ApiToken] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header.startswith(KEYWORD + " ") and header != KEYWORD:
            return None
        key = token_from_header(header)
        if key is None:
            raise exceptions.AuthenticationFailed("Malformed header: use 'Token <key>'.")
        token = api_token_authenticate(key)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked token.")
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = ApiTokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <key>`; create one with `manage.py create_api_token USER`.",
        }
