"""Who is on the other end of a WebSocket: the Origin check, then token or session auth.

Browsers always send Origin on a WebSocket handshake and cannot set an Authorization
header, so: a request with an Origin must come from one of ALLOWED_HOSTS (else 4403);
a session cookie counts only together with such an Origin, since a cookie without one
comes from a program that is not a browser holding someone's session; and
`Authorization: Token <key>` (our hashed API tokens) works with or without Origin.
Consumers refuse an anonymous scope["user"] with 4401.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.security.websocket import AllowedHostsOriginValidator
from django.contrib.auth.models import AnonymousUser

from tasks_app.api.authentication import KEYWORD, token_from_header
from tasks_app.services.tokens import api_token_authenticate

CLOSE_FORBIDDEN_ORIGIN = 4403

Scope = dict[str, Any]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin1")
    return None


@database_sync_to_async
def _token_user(header: str) -> Any:
    key = token_from_header(header)
    token = api_token_authenticate(key) if key else None
    return token.user if token is not None else AnonymousUser()


class RefuseConsumer(AsyncWebsocketConsumer):
    """Accepts, then closes with `code`: a refusal the client can tell apart from a crash."""

    def __init__(self, code: int) -> None:
        super().__init__()
        self.code = code

    async def connect(self) -> None:
        await self.accept()
        await self.close(self.code)


class WebSocketAuthMiddleware:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.with_session = AuthMiddlewareStack(inner)
        # Channels' validator holds the ALLOWED_HOSTS matching rules; only its check is used.
        self.origins = AllowedHostsOriginValidator(inner)
        self.refuse_origin = RefuseConsumer.as_asgi(code=CLOSE_FORBIDDEN_ORIGIN)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> Any:
        origin = _header(scope, b"origin")
        if origin is not None and not self.origins.valid_origin(urlparse(origin)):
            return await self.refuse_origin(scope, receive, send)
        authorization = _header(scope, b"authorization")
        # As in the REST API, a header of another scheme leaves the session to decide.
        if authorization is not None and authorization.split(" ", 1)[0] == KEYWORD:
            user = await _token_user(authorization)
            return await self.inner({**scope, "user": user}, receive, send)
        if origin is None:
            return await self.inner({**scope, "user": AnonymousUser()}, receive, send)
        return await self.with_session(scope, receive, send)
