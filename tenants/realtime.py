"""Realtime pushes to browsers, always after commit (channel layers deliver at most once).

Groups: ``ws.<workspace id>`` for a workspace's inbox, ``chat.<chat id>`` for one open chat.
Events are small dicts naming what changed; consumers render the fragments.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)


def workspace_group(workspace_id: Any) -> str:
    return f"ws.{workspace_id}"


def chat_group(chat_id: Any) -> str:
    return f"chat.{chat_id}"


def send_event_rollback_unsafe(group: str, event: dict[str, Any]) -> None:
    """Push now, whatever happens to the current transaction. Prefer send_event_on_commit."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, event)
    except Exception:
        # A push is best effort: the browser re-syncs on reconnect, the database is the truth.
        logger.warning("realtime push to %s failed", group, exc_info=True)


def send_event_on_commit(group: str, event: dict[str, Any]) -> None:
    transaction.on_commit(lambda: send_event_rollback_unsafe(group, event))
