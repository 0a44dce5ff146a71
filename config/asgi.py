"""HTTP and websockets in one ASGI application (uvicorn or daphne)."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from config.routing import websocket_urlpatterns  # noqa: E402
from webhooks.asgi import WebhookFront  # noqa: E402

if not settings.REDIS_URL and settings.EMBEDDED_BEAT:
    # Embedded mode: no beat process, so the periodic backstops run in this process.
    from config.embedded_beat import embedded_beat_start

    embedded_beat_start()

application = ProtocolTypeRouter(
    {
        # Providers' webhook POSTs take a lean path (webhooks/asgi.py); every other request is Django's.
        "http": WebhookFront(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
