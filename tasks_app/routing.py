"""WebSocket routes: one task's stream, and the user's dashboard."""

from typing import Any

from channels.routing import URLRouter
from django.urls import path, re_path

from tasks_app.consumers import CLOSE_NOT_FOUND, DashboardConsumer, TaskStreamConsumer
from tasks_app.ws_auth import RefuseConsumer, WebSocketAuthMiddleware

websocket_urlpatterns = [
    path("ws/tasks/<int:task_id>/", TaskStreamConsumer.as_asgi()),
    path("ws/dashboard/", DashboardConsumer.as_asgi()),
    # Unknown paths get a close code too, instead of an exception in the server log.
    re_path(r"", RefuseConsumer.as_asgi(code=CLOSE_NOT_FOUND)),
]


def websocket_application() -> Any:
    return WebSocketAuthMiddleware(URLRouter(websocket_urlpatterns))
