"""Admins' actions on a row (retry now, cancel) and the inbox's retry button."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from outbox.models import OutboxMessage
from outbox.services.enqueue import outbox_kick_on_commit
from outbox.services.policy import OutboxError, Status, message_hooks


def outbox_retry_now(*, row: OutboxMessage, actor: Any = None, now: datetime | None = None) -> OutboxMessage:
    """Send a waiting or failed row at the next drain. A failed row gets its attempts back."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = (
            OutboxMessage.objects.select_for_update(of=("self",)).select_related("message").get(pk=row.pk)
        )
        if locked.status in (Status.SENDING, Status.SENT):
            raise OutboxError(f"outbox row {locked.pk} is {locked.status}: nothing to retry")
        was_failed = locked.status in (Status.FAILED, Status.CANCELLED)
        locked.status = Status.QUEUED
        locked.next_attempt_at = now
        fields = ["status", "next_attempt_at", "updated_at"]
        if was_failed:
            locked.attempts = 0
            fields.append("attempts")
        locked.save(update_fields=fields)
        if locked.message_id:
            message_hooks().requeued(row=locked, actor=actor, occurred_at=now)
        _audit(locked, "outbox.retry_now", actor)
    outbox_kick_on_commit()
    return locked


def outbox_cancel(*, row: OutboxMessage, actor: Any = None, now: datetime | None = None) -> OutboxMessage:
    """Stop a row that has not gone yet; its message shows failed ("cancelled")."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = (
            OutboxMessage.objects.select_for_update(of=("self",)).select_related("message").get(pk=row.pk)
        )
        if locked.status not in (Status.QUEUED, Status.PAUSED, Status.FAILED):
            raise OutboxError(f"outbox row {locked.pk} is {locked.status}: it can no longer be cancelled")
        locked.status = Status.CANCELLED
        locked.last_error = "cancelled by an admin"
        locked.save(update_fields=["status", "last_error", "updated_at"])
        if locked.message_id:
            message_hooks().failed(
                row=locked, code="cancelled", reason="cancelled by an admin", occurred_at=now
            )
        _audit(locked, "outbox.cancelled", actor)
    return locked


def outbox_requeue_for_retry(*, row: OutboxMessage, now: datetime | None = None) -> OutboxMessage:
    """A failed message's retry button: the same row goes again from attempt one. Caller holds a transaction."""
    now = now or timezone.now()
    with transaction.atomic(savepoint=False):
        locked = OutboxMessage.objects.select_for_update().get(pk=row.pk)
        if locked.status in (Status.SENDING, Status.SENT, Status.QUEUED, Status.PAUSED):
            raise OutboxError("this message is already on its way")
        locked.status = Status.QUEUED
        locked.attempts = 0
        locked.next_attempt_at = now
        locked.lease_expires_at = None
        locked.last_error = ""
        locked.last_error_code = ""
        locked.save(
            update_fields=[
                "status",
                "attempts",
                "next_attempt_at",
                "lease_expires_at",
                "last_error",
                "last_error_code",
                "updated_at",
            ]
        )
    outbox_kick_on_commit()
    return locked


def _audit(row: OutboxMessage, action: str, actor: Any) -> None:
    from tenants.services import audit_record

    audit_record(
        action=action, workspace=row.channel.workspace, actor=actor, target=row.channel, data={"row": row.pk}
    )
