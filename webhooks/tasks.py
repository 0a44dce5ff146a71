"""Celery entry points for webhook processing (in-process when CELERY_TASK_ALWAYS_EAGER).

- ``webhook_events_drain``: process due events batch after batch until none is left (bounded by a time
  budget). Kicked after each stored event commits, at most once per ``KICK_COALESCE_SECONDS`` per process
  and always once after the last store; beat's sweep is the backstop. Any number may run at once.
- ``webhook_event_process``: one event by id (kept for callers that name an event).
- ``webhook_events_requeue_due``: beat, every 30 s: recover expired leases, then drain what is due.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from celery import shared_task
from django.conf import settings

from webhooks.processor import webhook_event_process as _process
from webhooks.processor import webhook_events_drain, webhook_events_sweep

logger = logging.getLogger(__name__)

DRAIN_TIME_BUDGET = 10.0  # seconds per task run, so one task never hogs a worker; the next kick goes on
KICK_COALESCE_SECONDS = 0.02
# Under a steady stream a running drain that waits this long finds the next events already there: larger
# claims, and no task (broker round trip, worker bookkeeping) per handful of events.
DRAIN_IDLE_WAIT = 0.05


@shared_task(acks_late=True, ignore_result=True)
def webhook_event_process(event_id: int) -> str:
    """Safe to run twice (the claim lets one worker in)."""
    return _process(event_id=event_id).status


@shared_task(name="webhooks.tasks.webhook_events_drain", ignore_result=True)
def webhook_events_drain_task() -> dict[str, int]:
    # First, before claiming: a kick skipped because this task was queued relies on the claims below.
    DrainQueuedSlot.release()
    # Eager (tests, the embedded mode): the task runs inside the kick, on the webhook's request path.
    eager = getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False)
    report = webhook_events_drain(time_budget=DRAIN_TIME_BUDGET, idle_wait=0.0 if eager else DRAIN_IDLE_WAIT)
    return {"claimed": report.claimed, "processed": report.processed, "failed": report.failed}


@shared_task(ignore_result=True)
def webhook_events_requeue_due() -> dict[str, int]:
    """Beat, every 30 s: recover expired leases and drain due pending/failed events."""
    recovered, due = webhook_events_sweep()
    if recovered or due:
        _publish_drain()
    return {"recovered": recovered, "queued": len(due)}


DRAIN_TASK_EXPIRES = 60


class DrainQueuedSlot:
    """At most one drain task waiting in the queue, whatever the number of kicks.

    A kick that finds a drain task queued and not yet started publishes nothing: that task will claim
    after the kick's events committed, so it takes them. The slot is a Redis key shared by all processes:
    set when a task is published (``SET NX``), deleted by the task as it starts, before it claims. Without
    it every web process published up to fifty drain tasks a second, and once processing kept up, the
    workers spent more on those tasks than on the events (docs/performance.md, session 3). A slot whose
    task was lost expires with the task; the beat sweep picks up what it would have drained.
    """

    KEY = "webhooks:drain:queued"

    @classmethod
    def shared(cls) -> bool:
        # Without Redis the cache is per process; in eager mode a "queued" task runs inline at once.
        return bool(getattr(settings, "REDIS_URL", "")) and not getattr(
            settings, "CELERY_TASK_ALWAYS_EAGER", False
        )

    @classmethod
    def take(cls) -> bool:
        if not cls.shared():
            return True
        try:
            return bool(_redis().set(cls.KEY, 1, nx=True, ex=DRAIN_TASK_EXPIRES))
        except Exception:
            return True  # Redis is unreachable: publish anyway (and let the broker error be logged)

    @classmethod
    def release(cls) -> None:
        if not cls.shared():
            return
        try:
            _redis().delete(cls.KEY)
        except Exception:
            logger.warning("could not clear the queued-drain slot; it expires by itself", exc_info=True)


@functools.lru_cache(maxsize=4)
def _redis_client(url: str, pid: int) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)


def _redis() -> Any:
    """One client (and connection pool) per process: a forked child makes its own."""
    return _redis_client(settings.REDIS_URL, os.getpid())


def _publish_drain() -> None:
    if not DrainQueuedSlot.take():
        return  # a drain task is queued and has not claimed yet: it will take these events too
    try:
        webhook_events_drain_task.apply_async(expires=DRAIN_TASK_EXPIRES)
    except Exception:
        DrainQueuedSlot.release()
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
