"""The outbox state machine: enqueue, claim, record, retry, pause and resume.

Row life: ``queued → sending → sent | failed``; ``queued ⇄ paused`` while its number is rate-limited;
``cancelled`` by an admin. ``attempts`` counts provider calls (incremented when a row is claimed);
``max_attempts`` counts the retries after the first call, so the default 5 gives the schedule
at once, +1, +2, +4, +8, +16 minutes, then failed (``retry_delay``).

Guarantees, and what gives them:

- **Once.** A row is claimed by one drain at a time (``FOR UPDATE SKIP LOCKED`` in one statement on
  Postgres; SQLite's IMMEDIATE write transaction with a single in-process drainer in the embedded mode).
  Results are recorded only while the row is still ``sending`` with the attempt number the drain claimed
  (a fencing token), so a drain that lost its lease cannot overwrite a newer attempt. The one way to
  send twice is a worker that dies (or times out) after the provider accepted and before the result was
  recorded: its lease expires and the row goes again. Providers have no idempotency key to prevent that.
- **Order per chat.** A row is claimable only when no earlier row of its chat is queued, sending or
  paused (a retrying row is queued with a later ``next_attempt_at``, so it holds its chat back). A row
  that failed for good or was cancelled no longer holds anything.
- **Provider calls outside transactions.** Claiming commits before any HTTP; each result is recorded in
  a short transaction of its own.

The steps live in modules by name (``claim``, ``record``, ``pause``, ``drain``…); everything callers use is
imported here, so ``from outbox.services import …`` is the one way in.
"""

from outbox.services.actions import outbox_cancel, outbox_requeue_for_retry, outbox_retry_now
from outbox.services.claim import CLAIM_SQL, outbox_claim_batch
from outbox.services.drain import (
    IDLE_POLL_SECONDS,
    RESUME_CHECK_SECONDS,
    DrainReport,
    outbox_drain,
    outbox_queue_depth,
)
from outbox.services.enqueue import outbox_enqueue, outbox_kick_on_commit
from outbox.services.pause import outbox_channel_pause, outbox_resume_due_channels
from outbox.services.policy import (
    DEFAULT_RETRY_AFTER,
    ORDER_BLOCKING,
    RATE_LIMITED_TYPES,
    RETRY_FIRST_DELAY,
    RETRY_MAX_DELAY,
    OutboxError,
    Status,
    lease_seconds,
    retry_delay,
)
from outbox.services.record import (
    outbox_pacing_hold,
    outbox_record_failure,
    outbox_record_success,
    outbox_record_successes,
    outbox_release,
    outbox_release_expired_leases,
)

__all__ = [
    "CLAIM_SQL",
    "DEFAULT_RETRY_AFTER",
    "IDLE_POLL_SECONDS",
    "ORDER_BLOCKING",
    "RATE_LIMITED_TYPES",
    "RESUME_CHECK_SECONDS",
    "RETRY_FIRST_DELAY",
    "RETRY_MAX_DELAY",
    "DrainReport",
    "OutboxError",
    "Status",
    "lease_seconds",
    "outbox_cancel",
    "outbox_channel_pause",
    "outbox_claim_batch",
    "outbox_drain",
    "outbox_enqueue",
    "outbox_kick_on_commit",
    "outbox_pacing_hold",
    "outbox_queue_depth",
    "outbox_record_failure",
    "outbox_record_success",
    "outbox_record_successes",
    "outbox_release",
    "outbox_release_expired_leases",
    "outbox_requeue_for_retry",
    "outbox_resume_due_channels",
    "outbox_retry_now",
    "retry_delay",
]
