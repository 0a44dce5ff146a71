"""Claiming due rows: one statement on Postgres (``FOR UPDATE SKIP LOCKED``), any number of drains at once."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.db.models.expressions import RawSQL
from django.utils import timezone

from channels_app.models import Channel
from inbox.models import Message
from outbox.models import OutboxMessage
from outbox.services.policy import ORDER_BLOCKING, RATE_LIMITED_TYPES, Status, lease_seconds, message_hooks

CLAIM_SQL = """
WITH picked AS (
    SELECT o.id
    FROM outbox_outboxmessage o
    WHERE o.status = 'queued'
      AND o.next_attempt_at <= %(now)s
      AND NOT EXISTS (
            SELECT 1 FROM channels_app_channel ch
            WHERE ch.id = o.channel_id AND (
                ch.status = 'paused' OR ch.paused_until > %(now)s
                OR (ch.pacing_hold_until > %(now)s AND o.message_type = 'message')))
      AND (o.chat_id IS NULL OR NOT EXISTS (
            SELECT 1 FROM outbox_outboxmessage e
            WHERE e.chat_id = o.chat_id AND e.id < o.id AND e.status IN ('queued', 'sending', 'paused')))
    ORDER BY o.priority DESC, o.created_at, o.id
    LIMIT %(limit)s
    FOR UPDATE OF o SKIP LOCKED
)
UPDATE outbox_outboxmessage u
SET status = 'sending', attempts = u.attempts + 1, lease_expires_at = %(lease)s, updated_at = %(now)s
FROM picked
WHERE u.id = picked.id
RETURNING u.id
"""


def _claimable(now: datetime) -> Any:
    earlier_in_chat = OutboxMessage.objects.filter(
        chat_id=OuterRef("chat_id"), id__lt=OuterRef("id"), status__in=ORDER_BLOCKING
    )
    return (
        OutboxMessage.objects.filter(status=Status.QUEUED, next_attempt_at__lte=now)
        .exclude(channel__status=Channel.Status.PAUSED)
        .filter(Q(channel__paused_until__isnull=True) | Q(channel__paused_until__lte=now))
        .exclude(message_type__in=RATE_LIMITED_TYPES, channel__pacing_hold_until__gt=now)
        .filter(Q(chat_id__isnull=True) | ~Exists(earlier_in_chat))
        .order_by("-priority", "created_at", "id")
    )


def outbox_claim_batch(*, limit: int = 50, now: datetime | None = None) -> list[OutboxMessage]:
    """Claim up to ``limit`` due rows (``sending``, attempts + 1, leased) and return them, best first.

    Postgres: one ``UPDATE … FROM (SELECT … FOR UPDATE SKIP LOCKED)`` statement, so any number of
    drains can claim at once without waiting for each other or taking the same row. SQLite (embedded):
    the same filter in one write transaction; SQLite has one writer at a time, so it is just as exclusive.
    """
    now = now or timezone.now()
    lease = now + timedelta(seconds=lease_seconds())
    if connection.vendor == "postgresql":
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(CLAIM_SQL, {"now": now, "lease": lease, "limit": limit})
            ids = [row[0] for row in cursor.fetchall()]
    else:
        with transaction.atomic():
            ids = list(_claimable(now).values_list("id", flat=True)[:limit])
            OutboxMessage.objects.filter(id__in=ids, status=Status.QUEUED).update(
                status=Status.SENDING, attempts=F("attempts") + 1, lease_expires_at=lease, updated_at=now
            )
    if not ids:
        return []
    rows = _load_claimed(ids)
    message_hooks().claimed(rows=rows, occurred_at=now)
    return rows


# Columns the drain never reads from a claimed row or its message (it only assigns some of them), left
# unloaded: building these models was a fifth of a drain's CPU, most of it in the datetime and JSON
# columns. Everything integrators' message events carry (outbox.subscriptions.message_event_data) stays
# loaded; a rare path that reads one of these (an echo merged into a sent message) loads it then.
UNSENT_ROW_FIELDS = (
    "next_attempt_at",
    "lease_expires_at",
    "last_error",
    "last_error_code",
    "created_at",
    "updated_at",
    "sent_at",
)
UNSENT_MESSAGE_FIELDS = (
    "payload",
    "previous_text",
    "error_message",
    "author_wa_id",
    "author_name",
    "reply_to_wa_id",
    "media_id",
    "media_mime_type",
    "media_sha256",
    "media_size",
    "media_filename",
    "media_status",
    "sort_at",
    "sent_at",
    "delivered_at",
    "read_at",
    "failed_at",
    "updated_at",
)


def _load_claimed(ids: list[int]) -> list[OutboxMessage]:
    """The claimed rows with what sending needs. A batch's rows share a few numbers: each Channel is loaded
    once, not joined into every row (building the same Channel a hundred times was a fifth of a drain's
    time); quoted messages are fetched only for the rows that quote one."""
    claimed: Any = ids
    if connection.vendor == "postgresql":
        # The ids as one JSON parameter: an IN list of a batch's ids was a new statement per batch size,
        # with every id quoted by psycopg in Python.
        claimed = RawSQL("SELECT (jsonb_array_elements_text(%s::jsonb))::bigint", [json.dumps(ids)])
    rows = list(
        OutboxMessage.objects.filter(id__in=claimed)
        .select_related("message")
        .defer(*UNSENT_ROW_FIELDS, *(f"message__{name}" for name in UNSENT_MESSAGE_FIELDS))
        .order_by("-priority", "created_at", "id")
    )
    channels = Channel.objects.in_bulk({row.channel_id for row in rows})
    quoted_ids = {
        row.message.reply_to_id for row in rows if row.message is not None and row.message.reply_to_id
    }
    quoted = Message.objects.only("id", "chat_id", "wa_message_id").in_bulk(quoted_ids) if quoted_ids else {}
    # Each row and its message share their number's one Channel (filled into the relation caches directly:
    # the descriptors' checks per assignment showed in the profile). The chat is not loaded: the drain
    # needs only its id, and building a Chat per row was a sixth of a drain's CPU.
    row_channel = OutboxMessage._meta.get_field("channel")
    message_channel = Message._meta.get_field("channel")
    for row in rows:
        channel = channels[row.channel_id]
        row_channel.set_cached_value(row, channel)  # type: ignore[union-attr]
        message = row.message
        if message is not None:
            if message.channel_id == channel.pk:
                message_channel.set_cached_value(message, channel)  # type: ignore[union-attr]
            if message.reply_to_id:
                message.reply_to = quoted.get(message.reply_to_id)
    return rows
