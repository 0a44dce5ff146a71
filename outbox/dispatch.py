"""What a claimed row turns into on the wire, by ``message_type``, and the loop that sends a batch.

``SENDERS`` maps a row's ``message_type`` to a function that performs the send and returns a
``SendResult`` (or raises ``TransportError``). Chat messages (``"message"``) go through the number's
provider transport; a later row type (e.g. ``"event_delivery"`` for integrators' webhooks) adds its own
entry here and reuses the claim, retry, lease and ordering machinery unchanged.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from channels_app.models import Channel
from channels_app.providers.base import FailureKind, OutgoingMessage, SendResult, Transport, TransportError
from channels_app.providers.registry import transport_for
from outbox.models import OutboxMessage
from outbox.ratelimit import token_bucket
from outbox.services import DrainReport, outbox_record_failure, outbox_record_success, outbox_release
from outbox.subscriptions import EVENT_DELIVERY, event_delivery_sender

logger = logging.getLogger(__name__)

MESSAGE = "message"


class SendContext:
    """Per-batch caches: one transport per number (its token is decrypted once)."""

    def __init__(self) -> None:
        self._transports: dict[Any, Transport] = {}

    def transport(self, channel: Channel) -> Transport:
        transport = self._transports.get(channel.pk)
        if transport is None:
            from outbox.tasks import sandbox_event_scheduler

            transport = transport_for(channel, schedule_events=sandbox_event_scheduler(channel.pk))
            self._transports[channel.pk] = transport
        return transport


def outgoing_message(row: OutboxMessage) -> OutgoingMessage:
    """The normalized message for a chat-message row: the payload written at enqueue plus what is only
    known at send time (the quoted message's provider id, the uploaded file's bytes)."""
    payload = row.payload
    message = row.message
    reply_to_wa_id = payload.get("reply_to_wa_id", "")
    media_bytes = None
    if message is not None:
        if message.reply_to is not None and message.reply_to.wa_message_id:
            reply_to_wa_id = message.reply_to.wa_message_id
        if message.media_file:
            with message.media_file.open("rb") as handle:
                media_bytes = handle.read()
    filename = payload.get("filename", "")
    mime = payload.get("mime_type") or (mimetypes.guess_type(filename)[0] if filename else "") or ""
    template = payload.get("template") or {}
    return OutgoingMessage(
        to=payload["to"],
        type=payload["type"],
        text=payload.get("text", ""),
        media_url=payload.get("media_url", ""),
        media_filename=filename,
        media_mime_type=mime,
        media_bytes=media_bytes,
        caption=payload.get("caption", ""),
        template_name=template.get("name", ""),
        template_language=template.get("language", ""),
        template_components=template.get("components") or [],
        reply_to_wa_id=reply_to_wa_id,
        client_message_id=payload.get("client_message_id", ""),
    )


def send_chat_message(row: OutboxMessage, context: SendContext) -> SendResult:
    return context.transport(row.channel).send(outgoing_message(row))


SENDERS: dict[str, Callable[[OutboxMessage, SendContext], SendResult]] = {
    MESSAGE: send_chat_message,
    # Integrators' signed webhooks (outbox/subscriptions.py); not in RATE_LIMITED_TYPES below.
    EVENT_DELIVERY: event_delivery_sender,
}

# Rows of these types spend their number's send rate (WhatsApp messages do; integrators' webhooks won't).
RATE_LIMITED_TYPES = {MESSAGE}


class BatchSender:
    def __init__(self, *, now: datetime | None = None) -> None:
        self.now = now
        self.context = SendContext()
        self.bucket = token_bucket()

    def _now(self) -> datetime:
        return self.now or timezone.now()

    def send(self, rows: list[OutboxMessage], report: DrainReport) -> None:
        # Numbers that ran out of tokens or were rate limited in this batch: their later rows go back at once.
        throttled: dict[Any, datetime] = {}
        limited: set[Any] = set()
        sent_by_channel: dict[Any, datetime] = {}
        for row in rows:
            channel_id = row.channel_id
            if channel_id in limited:
                # The provider just said stop for this number: park the rest with it.
                from outbox.services import outbox_channel_pause

                outbox_channel_pause(
                    channel=row.channel,
                    until=row.channel.paused_until or self._now(),
                    reason="rate limited",
                    rows=[row],
                    now=self.now,
                )
                report.paused += 1
                continue
            if row.message_type in RATE_LIMITED_TYPES:
                if channel_id in throttled:
                    outbox_release(row=row, until=throttled[channel_id], now=self.now)
                    report.deferred += 1
                    continue
                wait = self.bucket.take(str(channel_id), row.channel.effective_rate_limit)
                if wait > 0:
                    until = self._now() + timedelta(seconds=wait)
                    throttled[channel_id] = until
                    outbox_release(row=row, until=until, now=self.now)
                    report.deferred += 1
                    continue
            outcome = self.send_one(row)
            if outcome == OutboxMessage.Status.SENT:
                report.sent += 1
                sent_by_channel[channel_id] = self._now()
            elif outcome == OutboxMessage.Status.PAUSED:
                report.paused += 1
                limited.add(channel_id)
            elif outcome == OutboxMessage.Status.QUEUED:
                report.retrying += 1
            elif outcome == OutboxMessage.Status.FAILED:
                report.failed += 1
        for channel_id, when in sent_by_channel.items():
            # Once per batch, not per message: many drains updating one channel row would queue on its lock.
            Channel.objects.filter(pk=channel_id).update(last_sent_at=when)

    def send_one(self, row: OutboxMessage) -> str:
        sender = SENDERS.get(row.message_type)
        try:
            if sender is None:
                raise TransportError(
                    f"no sender for outbox rows of type {row.message_type!r}", kind=FailureKind.PERMANENT
                )
            result = sender(row, self.context)
        except TransportError as error:
            logger.info("outbox %s attempt %s failed (%s): %s", row.pk, row.attempts, error.kind, error)
            return outbox_record_failure(row=row, error=error, now=self.now)
        except Exception as exc:
            # Our own bug or an unreadable file: retry with backoff (it may be transient), and say what it was.
            logger.exception("outbox %s: unexpected error while sending", row.pk)
            internal = TransportError(
                f"internal error while sending: {type(exc).__name__}", kind=FailureKind.TRANSIENT
            )
            return outbox_record_failure(row=row, error=internal, now=self.now)
        recorded = outbox_record_success(row=row, result=result, now=self.now)
        return OutboxMessage.Status.SENT if recorded else row.status
