"""The ASGI application: HTTP (Django) and WebSocket (Channels) on one server."""

import os

import django
from django.core.asgi import get_asgi_application

from agentsite import telemetry

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentsite.settings")
django.setup(set_prefix=False)
# Before the handler exists: Django's instrumentation adds a middleware.
telemetry.start_tracing("web")
django_http = get_asgi_application()

# Imported after Django is set up: they load models.
from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from agentsite.body_limit import BodySizeLimit  # noqa: E402
from tasks_app.routing import websocket_application  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": BodySizeLimit(django_http, settings.MAX_REQUEST_BODY_BYTES),
        "websocket": websocket_application(),
    }
)
