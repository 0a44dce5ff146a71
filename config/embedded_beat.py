"""Celery beat for the embedded mode (no Redis, no beat process): the same periodic backstops, in a thread.

Started by the ASGI application when ``REDIS_URL`` is absent, so a lone ``uvicorn`` process still
retries failed webhook events, recovers expired leases and sends rows queued before a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connections

logger = logging.getLogger(__name__)

_started = threading.Lock()
_thread: threading.Thread | None = None


def _run_due(schedule: dict[str, dict[str, Any]], last_run: dict[str, float], now: float) -> list[str]:
    from config.celery import app

    app.loader.import_default_modules()  # autodiscovered task modules load lazily
    ran = []
    for name, entry in schedule.items():
        interval = float(entry["schedule"])
        if now - last_run.get(name, float("-inf")) < interval:
            continue
        last_run[name] = now
        try:
            app.tasks[entry["task"]].apply()
            ran.append(name)
        except Exception:
            logger.exception("embedded beat: %s failed", name)
    return ran


def _loop(stop: threading.Event, tick: float) -> None:
    last_run: dict[str, float] = {}
    try:
        while not stop.is_set():
            _run_due(settings.CELERY_BEAT_SCHEDULE, last_run, time.monotonic())
            close_old_connections()
            stop.wait(tick)
    finally:
        connections.close_all()


def embedded_beat_start(*, tick: float = 1.0) -> threading.Event | None:
    """Start the thread once per process; returns its stop event (None if already running)."""
    global _thread
    with _started:
        if _thread is not None and _thread.is_alive():
            return None
        stop = threading.Event()
        _thread = threading.Thread(target=_loop, args=(stop, tick), name="embedded-beat", daemon=True)
        _thread.start()
        logger.info("embedded beat started for %s", ", ".join(settings.CELERY_BEAT_SCHEDULE))
        return stop
