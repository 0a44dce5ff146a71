"""Celery entry points for webhook processing (in-process when CELERY_TASK_ALWAYS_EAGER).

- ``webhook_events_drain``: process due events batch after batch until none is left (bounded by a time
  budget). Kicked after each stored event commits, at most once per ``KICK_COALESCE_SECONDS`` per process
  and always once after the last store, from a kick thread (never on the ack's path); no task is published
  while a drain runs and will claim again (``DrainRunning``), nor while one is queued (``DrainQueuedSlot``).
  A drain with a backlog asks for a helper; one out of time hands over. Beat's sweep is the backstop.
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
    if getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False):
        # Eager (tests, the embedded mode): the task runs inside the kick, on the webhook's request path.
        report = webhook_events_drain(time_budget=DRAIN_TIME_BUDGET, idle_wait=0.0)
        return {"claimed": report.claimed, "processed": report.processed, "failed": report.failed}
    batch_size = settings.WEBHOOK_DRAIN_BATCH_SIZE

    def busy(claimed: int) -> None:
        DrainRunning.mark()
        if claimed >= batch_size:
            _publish_drain(helper=True)  # a backlog: a second drain may take its share meanwhile

    DrainRunning.mark()
    finished = False
    try:
        report = webhook_events_drain(
            batch_size=batch_size,
            time_budget=DRAIN_TIME_BUDGET,
            idle_wait=DRAIN_IDLE_WAIT,
            claim_interval=settings.WEBHOOK_DRAIN_CLAIM_INTERVAL,
            on_busy=busy,
            on_stopping=DrainRunning.clear,
        )
        finished = report.finished
    finally:
        if not finished:
            DrainRunning.clear()
    if not finished:
        # Out of time with events perhaps left, and kicks skipped while this ran: the next drain takes over.
        _publish_drain()
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


class DrainRunning:
    """Set while a drain task runs and will claim again, so kicks need not publish another task.

    Without it, a steady stream published a drain task per kick interval and web process (up to a hundred a
    second), each of which claimed an event or two: per event, the workers spent several times what the
    processing costs. The protocol: a running drain sets the key before its first claim and after every
    batch; when it finds nothing it deletes the key and only then claims one last time. A kick that saw the
    key (after its events committed) therefore sees a claim start after that moment: either the drain's next
    one or its last look. The key expires by itself (``TTL``), so a drain killed mid-batch holds kicks back
    for at most that long; the beat sweep is the backstop for events stored in between, as for a lost kick.
    """

    KEY = "webhooks:drain:running"
    TTL_MS = 2000  # longer than a batch takes; a batch that takes longer only lets a kick publish a task

    @classmethod
    def mark(cls) -> None:
        if not DrainQueuedSlot.shared():
            return
        try:
            _redis().set(cls.KEY, 1, px=cls.TTL_MS)
        except Exception:
            logger.warning("could not mark the webhook drain as running", exc_info=True)

    @classmethod
    def clear(cls) -> None:
        if not DrainQueuedSlot.shared():
            return
        try:
            _redis().delete(cls.KEY)
        except Exception:
            # Kicks may skip publishing until the key expires; the sweep covers what they stored meanwhile.
            logger.warning("could not clear the running-drain mark; it expires by itself", exc_info=True)

    @classmethod
    def is_set(cls) -> bool:
        if not DrainQueuedSlot.shared():
            return False
        try:
            return bool(_redis().exists(cls.KEY))
        except Exception:
            return False  # Redis is unreachable: publish anyway


@functools.lru_cache(maxsize=4)
def _redis_client(url: str, pid: int) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)


def _redis() -> Any:
    """One client (and connection pool) per process: a forked child makes its own."""
    return _redis_client(settings.REDIS_URL, os.getpid())


def _publish_drain(*, helper: bool = False) -> None:
    """Queue a drain task, unless one runs and will claim again (``DrainRunning``; ``helper``: a running
    drain with a backlog asks for another) or one is queued and has not started (``DrainQueuedSlot``)."""
    if not helper and DrainRunning.is_set():
        return  # a running drain claims again after this moment (or takes a last look): it takes these
    if not DrainQueuedSlot.take():
        return  # a drain task is queued and has not claimed yet: it will take these events too
    try:
        webhook_events_drain_task.apply_async(expires=DRAIN_TASK_EXPIRES)
    except Exception:
        DrainQueuedSlot.release()
        # The events are committed; the next kick or the beat sweep will drain them.
        logger.warning("could not kick a webhook drain; the sweep will retry", exc_info=True)


class CoalescedKick:
    """Calls ``publish`` at most once per ``interval`` and always once after the last call, on a thread of
    its own.

    A call only sets a flag for that thread: the caller (the webhook's ack, after its commit) never waits
    for the broker, and no thread is started per call (a ``threading.Timer`` per coalesced call used to).
    At a thousand webhooks a second this is at most fifty publishes a second per process.
    """

    def __init__(self, publish: Callable[[], None], interval: float) -> None:
        self.publish = publish
        self.interval = interval
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._wakeup = threading.Condition()
        self._pending = False
        self._thread: threading.Thread | None = None

    def __call__(self) -> None:
        if self._pid != os.getpid():  # a forked child: the parent's thread and lock are not ours
            self._reset()
        with self._wakeup:
            self._pending = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="webhook-kick", daemon=True)
                self._thread.start()
            self._wakeup.notify()

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not self._pending:
                    self._wakeup.wait()
                self._pending = False
            try:
                self.publish()  # after every call that set the flag: their events are committed
            except Exception:
                logger.warning("webhook drain kick failed; the sweep will pick the events up", exc_info=True)
            time.sleep(self.interval)


_coalesced_kick = CoalescedKick(_publish_drain, KICK_COALESCE_SECONDS)


def webhook_events_kick() -> None:
    """Start a drain for newly stored events (called after their transaction commits)."""
    if getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False):
        _publish_drain()  # runs here and now: tests and the embedded mode see the event processed at once
        return
    _coalesced_kick()
