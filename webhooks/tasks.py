"""Celery entry points for webhook processing (in-process when CELERY_TASK_ALWAYS_EAGER)."""

from __future__ import annotations

from celery import shared_task

from webhooks.processor import webhook_event_process as _process
from webhooks.processor import webhook_events_sweep


@shared_task(acks_late=True, ignore_result=True)
def webhook_event_process(event_id: int) -> str:
    """Kicked after the raw event commits; safe to run twice (the claim lets one worker in)."""
    return _process(event_id=event_id).status


@shared_task(ignore_result=True)
def webhook_events_requeue_due() -> dict[str, int]:
    """Beat, every 30 s: recover expired leases and queue due pending/failed events."""
    recovered, due = webhook_events_sweep()
    for event_id in due:
        webhook_event_process.delay(event_id)
    return {"recovered": recovered, "queued": len(due)}
