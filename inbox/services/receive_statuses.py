"""Delivery statuses → our outbound messages, forward only; a status for an id not stored yet waits in
DeferredStatus until that message appears (the rules: "Forward only" in ``inbox.services.receive``)."""

from __future__ import annotations

from datetime import datetime

from channels_app.providers.base import StatusUpdate
from inbox.models import DeferredStatus, Message, MessageEvent
from inbox.realtime import push_message_updated
from inbox.services.receive_context import ApplyResult, _Context
from inbox.services.receive_locks import _chat_lock, _lock_wa_message_id, _pk

# The order statuses may only move forward in (see ``inbox.services.receive`` for failed's place).
STATUS_RANK = {
    Message.Status.PENDING: 0,
    Message.Status.SENT: 1,
    Message.Status.FAILED: 2,
    Message.Status.DELIVERED: 3,
    Message.Status.READ: 4,
}
STATUS_TIME_FIELD = {
    Message.Status.SENT: "sent_at",
    Message.Status.DELIVERED: "delivered_at",
    Message.Status.READ: "read_at",
    Message.Status.FAILED: "failed_at",
}
STATUS_EVENT_KIND = {
    Message.Status.SENT: MessageEvent.Kind.SENT,
    Message.Status.DELIVERED: MessageEvent.Kind.DELIVERED,
    Message.Status.READ: MessageEvent.Kind.READ,
    Message.Status.FAILED: MessageEvent.Kind.FAILED,
}


def _status_merge(
    context: _Context | None,
    message: Message,
    *,
    status: str,
    occurred_at: datetime,
    error_code: str = "",
    error_message: str = "",
) -> list[str]:
    """Fold one status into the message (in memory); returns the changed field names.

    Order-independent: the status only moves up STATUS_RANK, each status keeps the earliest time it was
    reported, and a timeline row is written the first time a status is seen.
    """
    changed: list[str] = []
    time_field = STATUS_TIME_FIELD.get(status)  # type: ignore[call-overload]
    if time_field is None:
        return changed
    previous_time = getattr(message, time_field)
    if previous_time is None or occurred_at < previous_time:
        setattr(message, time_field, occurred_at)
        changed.append(time_field)
        if previous_time is None and message.pk is not None:
            detail = context.event_detail() if context else {"source": "send"}
            if error_code or error_message:
                detail.update(error_code=error_code, error_message=error_message)
            MessageEvent.objects.create(
                message=message,
                kind=STATUS_EVENT_KIND[status],  # type: ignore[index]
                detail=detail,
                occurred_at=occurred_at,
            )
    if status == Message.Status.FAILED and (error_code or error_message) and "failed_at" in changed:
        message.error_code = error_code[:32]
        message.error_message = error_message
        changed += ["error_code", "error_message"]
    current_rank = STATUS_RANK.get(message.status, -1)  # type: ignore[call-overload]
    if message.direction == Message.Direction.OUTBOUND and STATUS_RANK[status] > current_rank:  # type: ignore[index]
        message.status = status
        changed.append("status")
    return changed


def _apply_status(context: _Context, event: StatusUpdate, result: ApplyResult) -> None:
    channel = context.channel
    if not event.wa_message_id or event.status not in STATUS_TIME_FIELD:
        result.ignored += 1
        return
    _lock_wa_message_id(channel.pk, event.wa_message_id)
    message = Message.objects.filter(channel=channel, wa_message_id=event.wa_message_id).first()
    if message is None:
        # It can beat the send response (or the echo): keep it until that message appears.
        _, created = DeferredStatus.objects.get_or_create(
            channel=channel,
            wa_message_id=event.wa_message_id,
            status=event.status,
            defaults={
                "occurred_at": event.timestamp,
                "error_code": event.error_code[:32],
                "error_message": event.error_message,
            },
        )
        result.statuses_deferred += 1 if created else 0
        return
    if message.direction != Message.Direction.OUTBOUND:
        # Whapi reports "read" for customer messages we read on the phone: nothing to show.
        result.ignored += 1
        return
    _chat_lock(message.chat_id)
    message.refresh_from_db()
    changed = _status_merge(
        context,
        message,
        status=event.status,
        occurred_at=event.timestamp,
        error_code=event.error_code,
        error_message=event.error_message,
    )
    if changed:
        message.save(update_fields=[*changed, "updated_at"])
        push_message_updated(message)
        result.statuses_applied += 1


def _deferred_statuses_apply(context: _Context | None, message: Message) -> list[str]:
    """Fold parked statuses for this message's id into it, then drop them. Caller holds the id lock."""
    deferred = list(
        DeferredStatus.objects.raw(
            "SELECT * FROM inbox_deferredstatus WHERE channel_id = %s AND wa_message_id = %s",
            [_pk(message.channel_id), message.wa_message_id],
        )
    )
    changed: list[str] = []
    if message.direction == Message.Direction.OUTBOUND:
        for row in deferred:
            for name in _status_merge(
                context,
                message,
                status=row.status,
                occurred_at=row.occurred_at,
                error_code=row.error_code,
                error_message=row.error_message,
            ):
                if name not in changed:
                    changed.append(name)
    if deferred:
        DeferredStatus.objects.filter(pk__in=[row.pk for row in deferred]).delete()
    if changed:
        message.save(update_fields=[*changed, "updated_at"])
    return changed
