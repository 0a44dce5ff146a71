"""The drain loop: claim, hand to the sender (``outbox.dispatch``), record, until nothing is due."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from outbox.models import OutboxMessage
from outbox.services.claim import outbox_claim_batch
from outbox.services.pause import outbox_resume_due_channels
from outbox.services.policy import Status
from outbox.services.record import outbox_release_expired_leases


@dataclass
class DrainReport:
    claimed: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    paused: int = 0
    deferred: int = 0
    released_leases: int = 0
    resumed_channels: int = 0
    batches: int = 0
    errors: list[str] = field(default_factory=list)


RESUME_CHECK_SECONDS = 0.25
# With nothing to claim but calls still waiting for their send slots, look again this often: a number's
# put-back rows come due while half a pacing horizon of its slots is still reserved (outbox.dispatch).
IDLE_POLL_SECONDS = 0.1


def outbox_drain(
    *,
    batch_size: int = 50,
    max_batches: int | None = None,
    time_budget: float | None = None,
    now: datetime | None = None,
    clock: Callable[[], float] | None = None,
) -> DrainReport:
    """Send what is due until nothing is left (or ``max_batches``/``time_budget`` run out).

    1. Expired leases go back to the queue; numbers whose rate-limit pause ended resume (and again every
       ``RESUME_CHECK_SECONDS``).
    2. Record the calls that have finished (their successes in one short transaction).
    3. Claim a batch (committed before any HTTP) and hand it to the sender (``outbox.dispatch``): a row of
       a rate-limited number gets a send slot up to the pacing horizon ahead, and its call is made at that
       slot in the send pool, outside any transaction; a row past the horizon goes back for later. The
       drain does not wait for a batch's slots before claiming the next one, so one drain keeps many
       numbers busy; it only waits when more calls are due than the pool makes at once.
    4. Nothing (or less than a batch) to claim: wait up to ``IDLE_POLL_SECONDS`` for the calls in
       flight, then claim again; nothing claimed and nothing in flight: done. Repeat from 2.

    Whatever is still in flight when the drain stops is waited for and recorded.
    ``now`` freezes the clock for tests (retry schedule); otherwise each step reads the time afresh.
    """
    import time

    from outbox.dispatch import BatchSender

    clock = clock or time.monotonic
    started = clock()
    report = DrainReport()
    report.released_leases = outbox_release_expired_leases(now=now)
    report.resumed_channels = outbox_resume_due_channels(now=now)
    last_resume_check = clock()
    sender = BatchSender(now=now)

    def out_of_budget() -> bool:
        return time_budget is not None and clock() - started >= time_budget

    try:
        while True:
            if clock() - last_resume_check >= RESUME_CHECK_SECONDS:
                # A long drain must not hold a number paused past its Retry-After until the next drain,
                # nor send rows it holds for a number another drain saw paused meanwhile.
                report.resumed_channels += outbox_resume_due_channels(now=now)
                sender.stop_paused_numbers()
                last_resume_check = clock()
            sender.record_finished(report)
            if sender.backlogged():
                sender.wait_for_backlog()
                continue
            rows = outbox_claim_batch(limit=batch_size, now=now)
            if rows:
                report.batches += 1
                report.claimed += len(rows)
                sender.start(rows, report)
                if max_batches is not None and report.batches >= max_batches:
                    break
                if len(rows) < batch_size and sender.in_flight:
                    # A short claim took everything due: claiming again at once would walk the queue for
                    # the few rows that came due meanwhile (with many numbers' rows held, that walk is
                    # most of a drain's time). Let the calls in flight finish first, or a poll pass.
                    sender.wait(IDLE_POLL_SECONDS)
            elif not sender.in_flight:
                break
            else:
                sender.wait(IDLE_POLL_SECONDS)
            if out_of_budget():
                break
    finally:
        sender.finish(report)
    return report


def outbox_queue_depth() -> int:
    """Rows waiting to go (queued or paused): the outbox's health metric."""
    return OutboxMessage.objects.filter(status__in=[Status.QUEUED, Status.PAUSED]).count()
