from __future__ import annotations

from typing import Any

from inbox.routing import websocket_urlpatterns as inbox_websocket_urlpatterns

websocket_urlpatterns: list[Any] = [*inbox_websocket_urlpatterns]
