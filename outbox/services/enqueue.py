"""Queueing a row in the caller's transaction, and the drain kick after it commits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from channels_app.models import Channel
from outbox.models import OutboxMessage


def outbox_enqueue(
    *,
    channel: Channel,
    message_type: str,
    payload: dict[str, Any],
    chat: Any = None,
    message: Any = None,
    priority: int = 0,
    now: datetime | None = None,
) -> OutboxMessage:
    """Queue one row in the caller's transaction and kick a drain once it commits."""
    now = now or timezone.now()
    with transaction.atomic(savepoint=False):
        row = OutboxMessage.objects.create(
            channel=channel,
            chat=chat,
            message=message,
            message_type=message_type,
            payload=payload,
            priority=priority,
            next_attempt_at=now,
        )
    outbox_kick_on_commit()
    return row


def outbox_kick_on_commit() -> None:
    from outbox.tasks import outbox_kick  # tasks import this module

    transaction.on_commit(outbox_kick)
