"""Realtime pushes to browsers, always after commit (channel layers deliver at most once).

Groups: ``ws.<workspace id>`` for a workspace's inbox, ``chat.<chat id>`` for one open chat.
Events are small dicts naming what changed; consumers render the fragments.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Coroutine
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

PUSH_TIMEOUT_SECONDS = 5.0


def workspace_group(workspace_id: Any) -> str:
    return f"ws.{workspace_id}"


def chat_group(chat_id: Any) -> str:
    return f"chat.{chat_id}"


class _PushLoop:
    """One long-lived event loop per process for pushes from synchronous code (workers, drains).

    ``async_to_sync`` from a plain thread runs each call on a new event loop, and channels-redis keeps
    its connection pool per loop: every push would open a new Redis connection (about a quarter of a
    webhook event's processing time). One loop in a daemon thread keeps one pool for the process.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        with self._lock:
            # A forked child (Celery prefork) inherits the object but not the thread: start its own.
            if self._loop is None or self._pid != os.getpid() or self._loop.is_closed():
                self._loop = asyncio.new_event_loop()
                self._pid = os.getpid()
                threading.Thread(target=self._loop.run_forever, name="realtime-push", daemon=True).start()
            loop = self._loop
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=PUSH_TIMEOUT_SECONDS)


_push_loop = _PushLoop()


def _uses_shared_loop(layer: Any) -> bool:
    # The in-memory layer (embedded mode) keeps its queues on the server's loop: push there instead.
    return layer.__class__.__module__.startswith("channels_redis")


def send_event_rollback_unsafe(group: str, event: dict[str, Any]) -> None:
    """Push now, whatever happens to the current transaction. Prefer send_event_on_commit."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        if _uses_shared_loop(layer):
            _push_loop.run(layer.group_send(group, event))
        else:
            async_to_sync(layer.group_send)(group, event)
    except Exception:
        # A push is best effort: the browser re-syncs on reconnect, the database is the truth.
        logger.warning("realtime push to %s failed", group, exc_info=True)


def send_event_on_commit(group: str, event: dict[str, Any]) -> None:
    transaction.on_commit(lambda: send_event_rollback_unsafe(group, event))
