"""Celery entry points for webhook processing (in-process when CELERY_TASK_ALWAYS_EAGER).

- ``webhook_events_drain``: process due events batch after batch until none is left (bounded by a time
  budget). Kicked after each stored event commits, at most once per ``KICK_COALESCE_SECONDS`` per process
  and always once after the last store; beat's sweep is the backstop. Any number may run at once.
- ``webhook_event_process``: one event by id (kept for callers that name an event).
- ``webhook_events_requeue_due``: beat, every 30 s: recover expired leases, then drain what is due.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from celery import shared_task
from django.conf import settings

from webhooks.processor import webhook_event_process as _process
from webhooks.processor import webhook_events_drain, webhook_events_sweep

logger = logging.getLogger(__name__)

DRAIN_TIME_BUDGET = 10.0  # seconds per task run, so one task never hogs a worker; the next kick goes on
KICK_COALESCE_SECONDS = 0.02


@shared_task(acks_late=True, ignore_result=True)
def webhook_event_process(event_id: int) -> str:
    """Safe to run twice (the claim lets one worker in)."""
    return _process(event_id=event_id).status


@shared_task(name="webhooks.tasks.webhook_events_drain", ignore_result=True)
def webhook_events_drain_task() -> dict[str, int]:
    report = webhook_events_drain(time_budget=DRAIN_TIME_BUDGET)
    return {"claimed": report.claimed, "processed": report.processed, "failed": report.failed}


@shared_task(ignore_result=True)
def webhook_events_requeue_due() -> dict[str, int]:
    """Beat, every 30 s: recover expired leases and drain due pending/failed events."""
    recovered, due = webhook_events_sweep()
    if recovered or due:
        _publish_drain()
    return {"recovered": recovered, "queued": len(due)}


def _publish_drain() -> None:
    try:
        webhook_events_drain_task.apply_async(expires=60)
    except Exception:
        # The events are committed; the next kick or the beat sweep will drain them.
        logger.warning("could not kick a webhook drain; the sweep will retry", exc_info=True)


class CoalescedKick:
    """Calls ``publish`` at most once per ``interval`` and always once after the last call.

    A call within ``interval`` of the last publish schedules one publish for the end of the interval (later
    calls ride on it). At a thousand webhooks a second this is fifty drain tasks instead of a thousand.
    """

    def __init__(self, publish: Callable[[], None], interval: float) -> None:
        self.publish = publish
        self.interval = interval
        self._lock = threading.Lock()
        self._last = -float("inf")
        self._scheduled = False
        self._pid = os.getpid()

    def __call__(self) -> None:
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's timer is not ours
                self._pid, self._scheduled, self._last = os.getpid(), False, -float("inf")
            if self._scheduled:
                return
            wait = self._last + self.interval - time.monotonic()
            if wait > 0:
                self._scheduled = True
                timer = threading.Timer(wait, self._fire)
                timer.daemon = True
                timer.start()
                return
            self._last = time.monotonic()
        self.publish()

    def _fire(self) -> None:
        with self._lock:
            self._scheduled = False
            self._last = time.monotonic()
        self.publish()


_coalesced_kick = CoalescedKick(_publish_drain, KICK_COALESCE_SECONDS)


def webhook_events_kick() -> None:
    """Start a drain for newly stored events (called after their transaction commits)."""
    if getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False):
        _publish_drain()  # runs here and now: tests and the embedded mode see the event processed at once
        return
    _coalesced_kick()
