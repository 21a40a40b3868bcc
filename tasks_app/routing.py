"""WebSocket routes: one task's stream, and the user's dashboard."""

from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator


def websocket_application() -> AllowedHostsOriginValidator:
    return AllowedHostsOriginValidator(URLRouter([]))
