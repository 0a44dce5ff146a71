"""Realtime pushes to browsers, always after commit (channel layers deliver at most once).

Groups: ``ws.<workspace id>`` for a workspace's inbox, ``chat.<chat id>`` for one open chat.
Events are small dicts naming what changed; consumers render the fragments.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
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

    Callers do not wait for Redis: a push is queued and one consumer on the loop sends the queue in
    order (a chat's "sent" must not overtake its "created"). Waiting for each round trip took a third
    of a drain's time. A full queue (Redis unreachable for long) drops pushes: pages re-sync on reconnect.
    """

    MAX_QUEUED = 10_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[Any, str, dict[str, Any]]] | None = None
        self._pid = 0
        self._consumer: asyncio.Task[None] | None = None

    def _started(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Queue[tuple[Any, str, dict[str, Any]]]]:
        with self._lock:
            # A forked child (Celery prefork) inherits the object but not the thread: start its own.
            if (
                self._loop is None
                or self._queue is None
                or self._pid != os.getpid()
                or self._loop.is_closed()
            ):
                loop = asyncio.new_event_loop()
                queue: asyncio.Queue[tuple[Any, str, dict[str, Any]]] = asyncio.Queue(self.MAX_QUEUED)
                self._consumer = loop.create_task(self._consume(queue))
                threading.Thread(target=loop.run_forever, name="realtime-push", daemon=True).start()
                self._loop, self._queue, self._pid = loop, queue, os.getpid()
            return self._loop, self._queue

    def submit(self, layer: Any, group: str, event: dict[str, Any]) -> None:
        loop, queue = self._started()
        loop.call_soon_threadsafe(self._put, queue, (layer, group, event))

    @staticmethod
    def _put(
        queue: asyncio.Queue[tuple[Any, str, dict[str, Any]]], item: tuple[Any, str, dict[str, Any]]
    ) -> None:
        try:
            queue.put_nowait(item)
        except asyncio.QueueFull:
            logger.warning("realtime push to %s dropped: %d pushes already waiting", item[1], queue.qsize())

    @staticmethod
    async def _consume(queue: asyncio.Queue[tuple[Any, str, dict[str, Any]]]) -> None:
        while True:
            layer, group, event = await queue.get()
            try:
                await asyncio.wait_for(layer.group_send(group, event), PUSH_TIMEOUT_SECONDS)
            except Exception:
                # A push is best effort: the browser re-syncs on reconnect, the database is the truth.
                logger.warning("realtime push to %s failed", group, exc_info=True)
            finally:
                queue.task_done()

    def flush(self, timeout: float = PUSH_TIMEOUT_SECONDS) -> None:
        """Wait until every queued push was handed to the layer (tests; process shutdown)."""
        with self._lock:
            loop, queue = self._loop, self._queue
            if loop is None or queue is None or self._pid != os.getpid() or loop.is_closed():
                return
        asyncio.run_coroutine_threadsafe(queue.join(), loop).result(timeout=timeout)


_push_loop = _PushLoop()


@atexit.register
def _flush_at_exit() -> None:
    try:
        _push_loop.flush(timeout=2.0)
    except Exception:
        logger.warning("realtime pushes still queued at exit were dropped")


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
            _push_loop.submit(layer, group, event)
        else:
            async_to_sync(layer.group_send)(group, event)
    except Exception:
        # A push is best effort: the browser re-syncs on reconnect, the database is the truth.
        logger.warning("realtime push to %s failed", group, exc_info=True)


def send_event_on_commit(group: str, event: dict[str, Any]) -> None:
    transaction.on_commit(lambda: send_event_rollback_unsafe(group, event))
