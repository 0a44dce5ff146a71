"""What a claimed row turns into on the wire, by ``message_type``, and the sender that paces and sends
claimed batches (``BatchSender``: each number's rows at its reserved send slots, ``outbox.ratelimit``).

``SENDERS`` maps a row's ``message_type`` to its sender, which returns a ``SendResult`` (or the call that
will produce one) or raises ``TransportError``. Chat messages (``"message"``) go through the number's
provider transport; a later row type (e.g. ``"event_delivery"`` for integrators' webhooks) adds its own
entry here and reuses the claim, retry, lease and ordering machinery unchanged.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import math
import mimetypes
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.conf import settings
from django.utils import timezone

from channels_app.models import Channel
from channels_app.providers.base import FailureKind, OutgoingMessage, SendResult, Transport, TransportError
from channels_app.providers.registry import transport_for
from config.metrics import SEND_ATTEMPTS, SEND_LATENCY
from outbox.models import OutboxMessage
from outbox.ratelimit import RateLimiter, is_unlimited, rate_limiter
from outbox.services import (
    DEFAULT_RETRY_AFTER,
    RATE_LIMITED_TYPES,
    DrainReport,
    lease_seconds,
    outbox_pacing_hold,
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
    # Integrators' signed webhooks (outbox/subscriptions.py); not in RATE_LIMITED_TYPES (outbox.services).
    EVENT_DELIVERY: event_delivery_sender,
}


# How far ahead a number's sends may be reserved, in seconds (``OUTBOX_PACE_HORIZON``). One claim then
# carries up to horizon·rate rows of a number, each held until its slot. It has to cover the time between
# two claims that reach a number's rows, and a claim (oldest first) reaches the newest rows last: at 0.5 s
# F2's 20/s number, whose rows are the newest of each second, ran dry often enough to fall to 0.86-0.93 of
# its limit in some runs. Well inside the lease either way (held rows are ``sending``).
DEFAULT_PACE_HORIZON = 1.0
DEFAULT_PACE_FRACTION = 0.99

# A number whose slots are taken a whole horizon ahead gets its rows back when half of it is left: the
# claim that takes them then finds half a horizon of free slots (a chunk of rows, not one), and the half
# still reserved covers the time until some drain claims them (drains poll every IDLE_POLL_SECONDS).
REFILL_FRACTION = 0.5


def pace_horizon() -> float:
    # A held row must never outlive its lease, or another drain would send it too.
    horizon = float(getattr(settings, "OUTBOX_PACE_HORIZON", DEFAULT_PACE_HORIZON))
    return max(0.0, min(horizon, lease_seconds() / 4))


def pace_fraction() -> float:
    """The share of a number's limit it is paced at (``OUTBOX_PACE_FRACTION``; why not 1.0: settings)."""
    return float(getattr(settings, "OUTBOX_PACE_FRACTION", DEFAULT_PACE_FRACTION))


_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}
_schedulers: dict[tuple[int, int], SendScheduler] = {}
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


def send_scheduler(size: int) -> SendScheduler:
    """The process's scheduler in front of its send pool of ``size`` threads (fork-aware, like the pool)."""
    pool = _send_pool(size)
    key = (os.getpid(), size)
    with _pools_lock:
        scheduler = _schedulers.get(key)
        if scheduler is None:
            scheduler = _schedulers[key] = SendScheduler(pool)
        return scheduler


class Scheduler(Protocol):
    def submit_at(self, moment: float, call: Callable[[], Any]) -> Future[Any]: ...


class SendScheduler:
    """Hands calls to the send pool at given moments (``time.monotonic``), earliest first.

    One thread per process sleeps until the next moment; the pool's threads only make calls. (Held rows
    wait up to a pacing horizon for their slot: sleeping in pool threads would tie them up meanwhile, and
    one pool serves every number's sends.)
    """

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self._pool = pool
        self._queue: list[tuple[float, int, Callable[[], Any], Future[Any]]] = []
        self._order = itertools.count()  # ties keep submission order; calls are never compared
        self._changed = threading.Condition()
        threading.Thread(target=self._run, name="outbox-send-scheduler", daemon=True).start()

    def submit_at(self, moment: float, call: Callable[[], Any]) -> Future[Any]:
        with self._changed:
            if not self._queue and moment <= time.monotonic():
                # Due now and nothing waiting before it (calls no rate governs, an idle number's first
                # slot): straight to the pool, without waking this scheduler's thread for the hand-over.
                return self._pool.submit(call)
            future: Future[Any] = Future()
            heapq.heappush(self._queue, (moment, next(self._order), call, future))
            self._changed.notify()
        return future

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._queue:
                    self._changed.wait()
                wait = self._queue[0][0] - time.monotonic()
                if wait > 0:
                    self._changed.wait(wait)  # or until an earlier call is submitted
                    continue
                _, _, call, future = heapq.heappop(self._queue)
            self._pool.submit(_run_into, call, future)


def _run_into(call: Callable[[], Any], future: Future[Any]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(call())
    except BaseException as exc:
        future.set_exception(exc)


@dataclass(frozen=True)
class Answer:
    """What a call came back with, and when. ``outcome`` None: not sent (a held row whose number was rate
    limited by the provider before its slot came); it goes back to the queue."""

    outcome: SendResult | TransportError | None
    answered_at: datetime


@dataclass(eq=False)
class InFlight:
    row: OutboxMessage
    moment: float  # when the call is (or was) due, on the sender's clock
    answer: Future[Answer]
    batch: SentBatch


@dataclass(eq=False)
class SentBatch:
    """What is left to record of one claimed batch, so its numbers' ``last_sent_at`` is written once."""

    left: int = 0
    sent_channel_ids: set[Any] = field(default_factory=set)


class BatchSender:
    """Sends claimed batches, paced per number, and records the results; one per drain.

    1. ``start``: each row of a rate-limited number gets a send slot (``outbox.ratelimit``, reserved up
       to ``pace_horizon()`` ahead, at most one message per 1/rate); rows past the horizon go back, and
       the number's rows are not claimed again until half the horizon is left (``outbox_pacing_hold``).
       The rest are prepared (database work, here) and handed to the scheduler, which makes each call
       in the send pool at its slot. A batch holds at most one row per chat, so concurrent calls cannot
       reorder a chat, and the next row of a chat is claimable only once this one is recorded.
    2. ``record_finished``: the calls that are done are recorded (successes in one transaction).
    3. ``finish``: wait for every call in flight and record it.

    The drain claims its next batch without waiting for this one's slots (``outbox_drain``), so one drain
    keeps every number's slots filled. A provider 429 stops the held rows of that number, in every drain at
    their slot (the pause is shared through the rate limiter at once; ``stop_paused_numbers`` also reads
    the database's record): they go back unsent, and the pause keeps the number from being claimed until
    its Retry-After.
    """

    def __init__(
        self,
        *,
        now: datetime | None = None,
        limiter: RateLimiter | None = None,
        scheduler: Scheduler | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.now = now
        self.limiter = limiter or rate_limiter()
        self.concurrency = max(1, int(getattr(settings, "OUTBOX_SEND_CONCURRENCY", 8)))
        self.scheduler = scheduler or send_scheduler(self.concurrency)
        self.clock = clock
        self.in_flight: list[InFlight] = []
        # Numbers paused by the provider (429), until when on ``clock``: their held rows are not sent.
        # Written by the pool's threads and by ``stop_paused_numbers``, read before each call.
        self.paused_numbers: dict[Any, float] = {}
        # Numbers with a finite rate: their calls wait for slots, so they read the pause other drains share.
        self.paced_numbers: set[Any] = set()

    def _now(self) -> datetime:
        return self.now or timezone.now()

    def send(self, rows: list[OutboxMessage], report: DrainReport) -> None:
        """One batch from start to recorded results."""
        self.start(rows, report)
        self.finish(report)

    def start(self, rows: list[OutboxMessage], report: DrainReport) -> None:
        context = SendContext()
        batch = SentBatch()
        for row, moment in self.pace(rows, report):
            try:
                send = self.prepare(row, context)
            except Exception as exc:
                self.count(report, self.record_failure(row, self.as_transport_error(row, exc)))
                continue
            # Labels are read here, in the drain's thread: the call runs in the pool and must not query.
            provider = row.channel.provider if row.channel_id else row.message_type
            answer = self.scheduler.submit_at(moment, functools.partial(self.call, row, send, provider))
            self.in_flight.append(InFlight(row=row, moment=moment, answer=answer, batch=batch))
            batch.left += 1

    def pace(self, rows: list[OutboxMessage], report: DrainReport) -> list[tuple[OutboxMessage, float]]:
        """Each row's send moment on ``self.clock``, in claim order: now for rows no rate governs, a reserved
        slot for a number's rows; rows of a number past the horizon go back (and are not returned)."""
        now = self.clock()
        moments: dict[int, float] = {}
        by_number: dict[Any, list[OutboxMessage]] = {}
        for row in rows:
            if row.message_type in RATE_LIMITED_TYPES:
                by_number.setdefault(row.channel_id, []).append(row)
            else:
                moments[row.pk] = now
        horizon = pace_horizon()
        for channel_id, number_rows in by_number.items():
            rate = number_rows[0].channel.effective_rate_limit * pace_fraction()
            if not is_unlimited(rate):
                self.paced_numbers.add(channel_id)
            reservation = self.limiter.reserve(
                str(channel_id), rate=rate, horizon=horizon, count=len(number_rows)
            )
            # Read after the reservation returns, so a slot is never met early on this clock.
            reserved_at = self.clock()
            for row, delay in zip(number_rows, reservation.delays(), strict=False):
                moments[row.pk] = reserved_at + delay
            put_back = number_rows[reservation.reserved :]
            if put_back:
                wait = max(0.0, reservation.next_free_in - horizon * REFILL_FRACTION)
                until = self._now() + timedelta(seconds=wait)
                # The number's other due rows wait too (not claimed before ``until``), or the next claims
                # would fill up with its backlog (oldest first) and starve every other number.
                outbox_pacing_hold(channel_id=channel_id, until=until)
                outbox_release(rows=put_back, until=until, now=self.now)
                report.deferred += len(put_back)
        return [(row, moments[row.pk]) for row in rows if row.pk in moments]

    def prepare(self, row: OutboxMessage, context: SendContext) -> Callable[[], SendResult]:
        """Everything that touches the database (tokens, files, quoted ids) happens here, in this thread."""
        sender = SENDERS.get(row.message_type)
        if sender is None:
            raise TransportError(
                f"no sender for outbox rows of type {row.message_type!r}", kind=FailureKind.PERMANENT
            )
        prepared = sender(row, context)
        if isinstance(prepared, SendResult):
            return lambda: prepared
        return prepared

    def call(self, row: OutboxMessage, send: Callable[[], SendResult], provider: str) -> Answer:
        """Runs in the send pool at the row's slot: pure I/O, no queries."""
        paced = row.message_type in RATE_LIMITED_TYPES
        if paced and self.number_paused(row.channel_id):
            return Answer(outcome=None, answered_at=timezone.now())
        started = time.perf_counter()
        try:
            outcome: SendResult | TransportError = send()
        except Exception as exc:
            outcome = self.as_transport_error(row, exc)
        answered_at = timezone.now()
        SEND_LATENCY.labels(provider=provider).observe(time.perf_counter() - started)
        result = "sent" if isinstance(outcome, SendResult) else str(outcome.kind)
        SEND_ATTEMPTS.labels(provider=provider, result=result).inc()
        if paced and isinstance(outcome, TransportError) and outcome.kind == FailureKind.RATE_LIMITED:
            retry_after = outcome.retry_after if outcome.retry_after is not None else DEFAULT_RETRY_AFTER
            self.paused_numbers[row.channel_id] = self.clock() + retry_after
            # Every other drain's held rows of this number stop at their slot (``number_paused``), now
            # rather than once this batch's 429 is recorded.
            self.limiter.pause(str(row.channel_id), seconds=retry_after)
        return Answer(outcome=outcome, answered_at=answered_at)

    def number_paused(self, channel_id: Any) -> bool:
        """Whether a row of this number must not be sent: this sender saw a 429 for it, or, for a number
        with a rate (whose calls wait for their slots), any drain did (``RateLimiter.paused_for``, one
        Redis round trip per call). An unlimited number's calls are made as they are claimed."""
        if self.paused_numbers.get(channel_id, -math.inf) > self.clock():
            return True
        if channel_id not in self.paced_numbers:
            return False
        left = self.limiter.paused_for(str(channel_id))
        if left > 0:
            self.paused_numbers[channel_id] = self.clock() + left
            return True
        return False

    def stop_paused_numbers(self) -> None:
        """Rows held for a later slot whose number another drain saw paused (429) meanwhile are not sent
        either. One query, for the numbers this sender still holds rows of; the drain calls it a few times
        a second, so such rows stop within a fraction of a second instead of going out for a horizon."""
        now = self.clock()
        held = {item.row.channel_id for item in self.in_flight if item.moment > now}
        if not held:
            return
        wall_now = timezone.now()
        paused = Channel.objects.filter(pk__in=held, paused_until__gt=wall_now).values_list(
            "pk", "paused_until"
        )
        for channel_id, paused_until in paused:
            if paused_until is not None:
                self.paused_numbers[channel_id] = now + (paused_until - wall_now).total_seconds()

    def backlogged(self) -> bool:
        """More calls due now than the pool makes at once: claiming more would only queue them (and hold
        their rows ``sending``) behind these. Calls waiting for a later slot do not count."""
        now = self.clock()
        due = sum(1 for item in self.in_flight if item.moment <= now and not item.answer.done())
        return due > self.concurrency

    def wait_for_backlog(self) -> None:
        now = self.clock()
        due = [item.answer for item in self.in_flight if item.moment <= now and not item.answer.done()]
        # The pool runs calls in submission order: once all but its last ``concurrency`` are done, it is
        # making the rest, and the next claim's calls queue behind those only.
        wait(due[: len(due) - self.concurrency])

    def wait(self, timeout: float | None) -> None:
        """Until every call in flight is done, or ``timeout`` seconds."""
        wait([item.answer for item in self.in_flight], timeout=timeout)

    def finish(self, report: DrainReport) -> None:
        self.wait(None)
        self.record_finished(report)

    def record_finished(self, report: DrainReport) -> None:
        done: list[InFlight] = []
        remaining: list[InFlight] = []
        for item in self.in_flight:
            (done if item.answer.done() else remaining).append(item)
        if not done:
            return
        self.in_flight = remaining
        not_sent: list[OutboxMessage] = []
        successes: list[tuple[OutboxMessage, SendResult]] = []
        # Failures first: a 429 pauses its number before the rows it stopped go back to the queue, so no
        # other drain can claim them in between.
        for item in done:
            try:
                answer = item.answer.result()
            except Exception as exc:  # ``call`` turns a send's exceptions into outcomes; this is our bug
                answer = Answer(outcome=self.as_transport_error(item.row, exc), answered_at=timezone.now())
            outcome = answer.outcome
            if outcome is None:
                not_sent.append(item.row)
            elif isinstance(outcome, SendResult):
                successes.append((item.row, outcome))
                item.batch.sent_channel_ids.add(item.row.channel_id)
            else:
                # Timed from the answer, not from now: a 429's Retry-After counts from when it came.
                self.count(report, self.record_failure(item.row, outcome, at=answer.answered_at))
        self.release_not_sent(not_sent, report)
        if successes:
            report.sent += outbox_record_successes(results=successes, now=self.now)
        for item in done:
            item.batch.left -= 1
            if item.batch.left == 0 and item.batch.sent_channel_ids:
                # Once per batch, not per message: many drains updating one channel row would queue on its lock.
                Channel.objects.filter(pk__in=item.batch.sent_channel_ids).update(last_sent_at=self._now())

    def release_not_sent(self, rows: list[OutboxMessage], report: DrainReport) -> None:
        """Held rows stopped by their number's pause go back due when the pause ends as this sender knows
        it: the 429 that stopped them may not be recorded yet (its call can finish after theirs), and
        until it is, nothing else keeps other drains from claiming them."""
        by_number: dict[Any, list[OutboxMessage]] = {}
        for row in rows:
            by_number.setdefault(row.channel_id, []).append(row)
        for channel_id, number_rows in by_number.items():
            pause_left = max(0.0, self.paused_numbers.get(channel_id, -math.inf) - self.clock())
            outbox_release(rows=number_rows, until=self._now() + timedelta(seconds=pause_left), now=self.now)
            report.deferred += len(number_rows)

    @staticmethod
    def as_transport_error(row: OutboxMessage, exc: Exception) -> TransportError:
        if isinstance(exc, TransportError):
            return exc
        # Our own bug or an unreadable file: retry with backoff (it may be transient), and say what it was.
        logger.error("outbox %s: unexpected error while sending", row.pk, exc_info=exc)
        return TransportError(
            f"internal error while sending: {type(exc).__name__}", kind=FailureKind.TRANSIENT
        )

    def record_failure(self, row: OutboxMessage, error: TransportError, at: datetime | None = None) -> str:
        logger.info("outbox %s attempt %s failed (%s): %s", row.pk, row.attempts, error.kind, error)
        return outbox_record_failure(row=row, error=error, now=self.now or at)

    @staticmethod
    def count(report: DrainReport, outcome: str) -> None:
        if outcome == OutboxMessage.Status.PAUSED:
            report.paused += 1
        elif outcome == OutboxMessage.Status.QUEUED:
            report.retrying += 1
        elif outcome == OutboxMessage.Status.FAILED:
            report.failed += 1
