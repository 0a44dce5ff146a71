"""Outbox rules every step shares: statuses, the retry schedule, the lease, what is rate limited."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings

from outbox.models import OutboxMessage

Status = OutboxMessage.Status

RETRY_FIRST_DELAY = timedelta(minutes=1)
RETRY_MAX_DELAY = timedelta(minutes=16)
DEFAULT_RETRY_AFTER = 60.0
# Statuses of an earlier row that hold back the later rows of the same chat.
ORDER_BLOCKING = (Status.QUEUED, Status.SENDING, Status.PAUSED)
# Rows of these types spend their number's send rate (WhatsApp messages do; integrators' webhooks don't).
# CLAIM_SQL spells the same list out (a literal, so bench/outbox.py can run the statement as it stands).
RATE_LIMITED_TYPES = frozenset({"message"})


def lease_seconds() -> int:
    # Longer than a send can take (connect + read timeouts, plus a media upload), so a live worker never
    # loses its lease; a dead one's rows are back in the queue after this long.
    return int(getattr(settings, "OUTBOX_LEASE_SECONDS", 90))


def retry_delay(attempts: int) -> timedelta:
    """Wait after the ``attempts``-th failed call: 1, 2, 4, 8, 16, 16… minutes (Sentry's doubling, capped)."""
    return min(RETRY_FIRST_DELAY * (2 ** max(0, attempts - 1)), RETRY_MAX_DELAY)


class OutboxError(Exception):
    """A refused outbox operation (retry/cancel of a row in the wrong state), fit to show an admin."""


def owned(row: OutboxMessage) -> Any:
    """The row, still ours: sending with the attempt number we claimed."""
    return OutboxMessage.objects.filter(pk=row.pk, status=Status.SENDING, attempts=row.attempts)


def message_hooks() -> Any:
    # The inbox side of a message row's life (timeline, status, realtime). Imported late: inbox.services
    # imports this module to enqueue.
    from inbox.services import outbox_hooks

    return outbox_hooks.OUTBOX_HOOKS
