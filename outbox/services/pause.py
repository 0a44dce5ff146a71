"""A provider's rate limit: park a number's rows until its Retry-After, then resume them."""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from channels_app.models import Channel
from channels_app.services import channel_status_set
from config.metrics import RATE_LIMIT_PAUSES
from outbox.models import OutboxMessage
from outbox.ratelimit import rate_limiter
from outbox.services.policy import Status, message_hooks, owned

logger = logging.getLogger(__name__)


def outbox_channel_pause(
    *,
    channel: Channel,
    until: datetime,
    reason: str,
    rows: list[OutboxMessage] | None = None,
    now: datetime | None = None,
) -> None:
    """The provider rate-limited this number: park its queued rows (and ``rows`` we hold) until ``until``.

    The number shows ``degraded`` meanwhile. Claimed rows given here go back unsent, without using up
    an attempt: a rate limit says nothing about the message.
    """
    now = now or timezone.now()
    with transaction.atomic():
        locked = Channel.objects.select_for_update(no_key=True).get(pk=channel.pk)
        # Several drains can hit the limit at once; keep the latest end.
        until = max(until, locked.paused_until) if locked.paused_until else until
        for row in rows or []:
            owned(row).update(
                status=Status.PAUSED,
                attempts=F("attempts") - 1,
                lease_expires_at=None,
                last_error=reason,
                last_error_code="rate_limited",
                updated_at=now,
            )
            if row.message_id:
                message_hooks().retry(
                    row=row, code="rate_limited", reason=reason, next_attempt_at=until, occurred_at=now
                )
        OutboxMessage.objects.filter(channel=locked, status=Status.QUEUED).update(
            status=Status.PAUSED, updated_at=now
        )
        if locked.status != Channel.Status.PAUSED:  # an admin's pause outranks ours
            channel_status_set(
                channel=locked,
                status=Channel.Status.DEGRADED,
                detail=f"Rate limited by the provider until {until:%H:%M:%S} UTC",
                paused_until=until,
            )
        else:
            Channel.objects.filter(pk=locked.pk).update(paused_until=until)
    channel.paused_until = until
    RATE_LIMIT_PAUSES.labels(provider=channel.provider).inc()
    logger.info("channel %s rate limited until %s", channel.pk, until.isoformat())


def outbox_resume_due_channels(*, now: datetime | None = None) -> int:
    """Numbers whose rate-limit pause is over: rows back to the queue, number back to connected."""
    now = now or timezone.now()
    resumed = 0
    due = list(
        Channel.objects.filter(status=Channel.Status.DEGRADED, paused_until__lte=now).values_list(
            "pk", flat=True
        )
    )
    if not due and not OutboxMessage.objects.filter(status=Status.PAUSED).exists():
        return 0  # the usual case, checked by every drain a few times a second: two index lookups
    for channel_id in due:
        with transaction.atomic():
            channel = Channel.objects.select_for_update(no_key=True).get(pk=channel_id)
            if (
                channel.status != Channel.Status.DEGRADED
                or not channel.paused_until
                or channel.paused_until > now
            ):
                continue  # another drain got here first
            OutboxMessage.objects.filter(channel=channel, status=Status.PAUSED).update(
                status=Status.QUEUED, next_attempt_at=now, updated_at=now
            )
            channel_status_set(channel=channel, status=Channel.Status.CONNECTED, detail="", paused_until=None)
            resumed += 1
        # The pause shared through the rate limiter ends with its record here (by now its own timer has run
        # out too, unless the clocks differ, as with a test's frozen ``now``). After the commit above: the
        # drains call this outside any transaction.
        rate_limiter().resume(str(channel_id))
    # Rows parked for a number that is no longer held back at all (an admin resumed it, say).
    OutboxMessage.objects.filter(status=Status.PAUSED).exclude(
        channel__status__in=[Channel.Status.PAUSED, Channel.Status.DEGRADED]
    ).filter(Q(channel__paused_until__isnull=True) | Q(channel__paused_until__lte=now)).update(
        status=Status.QUEUED, next_attempt_at=now, updated_at=now
    )
    return resumed
