"""Celery tasks and the embedded-mode drainer.

- ``outbox_drain``: drain until empty (bounded by a time budget). Kicked after every enqueue commits and
  run every second by beat as the backstop (``CELERY_BEAT_SCHEDULE["outbox-drain"]``). Any number may
  run at once.
- Embedded mode (no ``REDIS_URL``, tasks eager): one daemon thread in this process drains instead; it
  starts on the first kick and also wakes every second, like beat.
- ``sandbox_statuses_apply``: the sandbox number's simulated "delivered"/"read" statuses, fed to the
  normal inbound path after a delay.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import close_old_connections, connection, transaction

from channels_app.providers.base import StatusUpdate
from outbox.services import outbox_drain

logger = logging.getLogger(__name__)

DRAIN_TIME_BUDGET = 10.0  # seconds per task run, so one task never hogs a worker; beat picks up the rest


@shared_task(name="outbox.tasks.outbox_drain", ignore_result=True)
def outbox_drain_task() -> dict[str, int]:
    report = outbox_drain(batch_size=settings.OUTBOX_BATCH_SIZE, time_budget=DRAIN_TIME_BUDGET)
    return {"claimed": report.claimed, "sent": report.sent, "failed": report.failed}


def outbox_kick() -> None:
    """Start a drain now (called after the enqueueing transaction commits)."""
    if not getattr(settings, "OUTBOX_AUTO_DRAIN", True):
        return
    if getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False):
        embedded_drainer.wake()
        return
    try:
        outbox_drain_task.apply_async(expires=30)
    except Exception:
        # The broker is down: beat (or the next kick) will drain; the row is safe in the database.
        logger.warning("outbox: could not kick a drain", exc_info=True)


class EmbeddedDrainer:
    """The in-process drainer for the embedded mode: one thread, started lazily, closed connections after."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="outbox-drainer", daemon=True)
                self._thread.start()
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._wake.wait(self.interval)
                self._wake.clear()
                if self._stop.is_set():
                    break
                try:
                    close_old_connections()
                    outbox_drain(batch_size=settings.OUTBOX_BATCH_SIZE, time_budget=DRAIN_TIME_BUDGET)
                except Exception:
                    logger.exception("outbox: embedded drain failed; retrying in %.0f s", self.interval)
        finally:
            connection.close()


embedded_drainer = EmbeddedDrainer()


# ---------------------------------------------------------------- sandbox statuses


@shared_task(name="outbox.tasks.sandbox_statuses_apply", ignore_result=True)
def sandbox_statuses_apply(channel_id: str, statuses: list[dict[str, Any]]) -> None:
    from channels_app.models import Channel
    from inbox.services.receive import inbound_events_apply

    channel = Channel.objects.filter(pk=channel_id).first()
    if channel is None:
        return
    events: list[Any] = [
        StatusUpdate(
            wa_message_id=item["wa_message_id"],
            status=item["status"],
            timestamp=datetime.fromisoformat(item["timestamp"]),
            wa_chat_id=item.get("wa_chat_id", ""),
        )
        for item in statuses
    ]
    with transaction.atomic(durable=True):
        inbound_events_apply(channel=channel, events=events)


def _apply_in_thread(channel_id: str, statuses: list[dict[str, Any]]) -> None:
    try:
        sandbox_statuses_apply(channel_id, statuses)
    except Exception:
        logger.exception("sandbox: applying simulated statuses failed")
    finally:
        connection.close()  # this timer thread's own connection


def sandbox_event_scheduler(channel_id: Any) -> Any:
    """The callback the sandbox transport calls with (events, delay): a delayed task in production, a
    timer thread with its own database connection in the embedded mode."""

    def schedule(events: list[StatusUpdate], delay: float) -> None:
        statuses = [
            {
                "wa_message_id": e.wa_message_id,
                "status": e.status,
                "timestamp": e.timestamp.isoformat(),
                "wa_chat_id": e.wa_chat_id,
            }
            for e in events
        ]
        if getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False):
            timer = threading.Timer(delay, _apply_in_thread, args=(str(channel_id), statuses))
            timer.daemon = True
            timer.start()
        else:
            sandbox_statuses_apply.apply_async(args=(str(channel_id), statuses), countdown=delay)

    return schedule
