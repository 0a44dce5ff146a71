"""What a claimed row turns into on the wire, by ``message_type``, and the loop that sends a batch.

``SENDERS`` maps a row's ``message_type`` to its sender, which returns a ``SendResult`` (or the call that
will produce one) or raises ``TransportError``. Chat messages (``"message"``) go through the number's
provider transport; a later row type (e.g. ``"event_delivery"`` for integrators' webhooks) adds its own
entry here and reuses the claim, retry, lease and ordering machinery unchanged.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from channels_app.models import Channel
from channels_app.providers.base import FailureKind, OutgoingMessage, SendResult, Transport, TransportError
from channels_app.providers.registry import transport_for
from config.metrics import SEND_ATTEMPTS, SEND_LATENCY
from outbox.models import OutboxMessage
from outbox.ratelimit import token_bucket
from outbox.services import (
    DrainReport,
    outbox_defer_channel,
    outbox_record_failure,
    outbox_record_successes,
    outbox_release,
)
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


def send_chat_message(row: OutboxMessage, context: SendContext) -> Callable[[], SendResult]:
    """Prepared here (token, file bytes, quoted id: database work, in the drain's thread); the returned call
    is pure HTTP and may run in the batch's thread pool."""
    transport = context.transport(row.channel)
    message = outgoing_message(row)
    return lambda: transport.send(message)


# message_type → sender(row, context). A sender either returns the deferred call to make (pure I/O, run
# concurrently with the batch's other calls) or performs the send itself and returns its SendResult (run
# in the drain's own thread, one after another). Either way it raises TransportError to fail.
Sender = Callable[[OutboxMessage, "SendContext"], "SendResult | Callable[[], SendResult]"]
SENDERS: dict[str, Sender] = {
    MESSAGE: send_chat_message,
    # Integrators' signed webhooks (outbox/subscriptions.py); not in RATE_LIMITED_TYPES below.
    EVENT_DELIVERY: event_delivery_sender,
}

# Rows of these types spend their number's send rate (WhatsApp messages do; integrators' webhooks won't).
RATE_LIMITED_TYPES = {MESSAGE}


_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _send_pool(size: int) -> ThreadPoolExecutor:
    """One send pool per process (and size), kept between batches: starting threads for every batch cost
    a tenth of a drain's time. A forked child gets its own (threads do not survive a fork)."""
    key = (os.getpid(), size)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = ThreadPoolExecutor(max_workers=size, thread_name_prefix="outbox-send")
        return pool


class BatchSender:
    """Sends one claimed batch: gate each row on its number's bucket, make the calls (concurrently: a
    batch holds at most one row per chat, so this cannot reorder a chat), then record the results."""

    def __init__(self, *, now: datetime | None = None) -> None:
        self.now = now
        self.context = SendContext()
        self.bucket = token_bucket()
        self.concurrency = int(getattr(settings, "OUTBOX_SEND_CONCURRENCY", 8))

    def _now(self) -> datetime:
        return self.now or timezone.now()

    def send(self, rows: list[OutboxMessage], report: DrainReport) -> None:
        # Numbers out of tokens in this batch: their later rows go back at once, for the same wait.
        throttled: dict[Any, datetime] = {}
        ready: list[tuple[OutboxMessage, Callable[[], SendResult]]] = []
        for row in rows:
            channel_id = row.channel_id
            if row.message_type in RATE_LIMITED_TYPES:
                if channel_id in throttled:
                    outbox_release(row=row, until=throttled[channel_id], now=self.now)
                    report.deferred += 1
                    continue
                wait = self.bucket.take(str(channel_id), row.channel.effective_rate_limit)
                if wait > 0:
                    until = self._now() + timedelta(seconds=wait)
                    throttled[channel_id] = until
                    # The number's other due rows wait too, or the next claims would fill up with its
                    # backlog (oldest first) and starve every other number.
                    outbox_defer_channel(channel_id=channel_id, until=until, message_types=RATE_LIMITED_TYPES)
                    outbox_release(row=row, until=until, now=self.now)
                    report.deferred += 1
                    continue
            try:
                ready.append((row, self.prepare(row)))
            except Exception as exc:
                self.count(report, self.record_failure(row, self.as_transport_error(row, exc)))

        outcomes = self.execute(ready)
        successes: list[tuple[OutboxMessage, SendResult]] = []
        for row, outcome in outcomes:
            if isinstance(outcome, SendResult):
                successes.append((row, outcome))
            else:
                self.count(report, self.record_failure(row, outcome))
        if successes:
            recorded = outbox_record_successes(results=successes, now=self.now)
            report.sent += recorded
            for channel_id in {row.channel_id for row, _ in successes}:
                # Once per batch, not per message: many drains updating one channel row would queue on its lock.
                Channel.objects.filter(pk=channel_id).update(last_sent_at=self._now())

    def prepare(self, row: OutboxMessage) -> Callable[[], SendResult]:
        """Everything that touches the database (tokens, files, quoted ids) happens here, in this thread."""
        sender = SENDERS.get(row.message_type)
        if sender is None:
            raise TransportError(
                f"no sender for outbox rows of type {row.message_type!r}", kind=FailureKind.PERMANENT
            )
        prepared = sender(row, self.context)
        if isinstance(prepared, SendResult):
            return lambda: prepared
        return prepared

    def execute(
        self, ready: list[tuple[OutboxMessage, Callable[[], SendResult]]]
    ) -> list[tuple[OutboxMessage, SendResult | TransportError]]:
        # Labels are read here, in the drain's thread: the calls below may run in a pool and must not query.
        providers = {
            row.pk: (row.channel.provider if row.channel_id else row.message_type) for row, _ in ready
        }

        def call(item: tuple[OutboxMessage, Callable[[], SendResult]]) -> tuple[OutboxMessage, Any]:
            row, send = item
            provider = providers[row.pk]
            started = time.perf_counter()
            try:
                outcome: SendResult | TransportError = send()
            except Exception as exc:
                outcome = self.as_transport_error(row, exc)
            SEND_LATENCY.labels(provider=provider).observe(time.perf_counter() - started)
            result = "sent" if isinstance(outcome, SendResult) else str(outcome.kind)
            SEND_ATTEMPTS.labels(provider=provider, result=result).inc()
            return row, outcome

        if len(ready) <= 1 or self.concurrency <= 1:
            return [call(item) for item in ready]
        return list(_send_pool(self.concurrency).map(call, ready))

    @staticmethod
    def as_transport_error(row: OutboxMessage, exc: Exception) -> TransportError:
        if isinstance(exc, TransportError):
            return exc
        # Our own bug or an unreadable file: retry with backoff (it may be transient), and say what it was.
        logger.error("outbox %s: unexpected error while sending", row.pk, exc_info=exc)
        return TransportError(
            f"internal error while sending: {type(exc).__name__}", kind=FailureKind.TRANSIENT
        )

    def record_failure(self, row: OutboxMessage, error: TransportError) -> str:
        logger.info("outbox %s attempt %s failed (%s): %s", row.pk, row.attempts, error.kind, error)
        return outbox_record_failure(row=row, error=error, now=self.now)

    @staticmethod
    def count(report: DrainReport, outcome: str) -> None:
        if outcome == OutboxMessage.Status.PAUSED:
            report.paused += 1
        elif outcome == OutboxMessage.Status.QUEUED:
            report.retrying += 1
        elif outcome == OutboxMessage.Status.FAILED:
            report.failed += 1
