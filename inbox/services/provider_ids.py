"""The send response: a sent message gets the provider's id, and what arrived about that id first is merged."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from inbox.models import Message, MessageEvent, MessageReaction
from inbox.realtime import push_chat_updated, push_message_removed, push_message_updated
from inbox.services.receive_locks import _chat_lock, _lock_wa_message_id
from inbox.services.receive_statuses import (
    STATUS_RANK,
    STATUS_TIME_FIELD,
    _deferred_statuses_apply,
    _status_merge,
)

# ---------------------------------------------------------------- outbound: the send response


def message_record_provider_id(
    *, message: Message, wa_message_id: str, sent_at: datetime | None = None
) -> Message:
    """Record the provider's id for a message we sent; merge whatever about that id arrived first.

    Called by the outbound sender once the provider accepted the message. Runs in the caller's
    transaction (or its own), holding the wa_message_id lock and then the chat row lock:

    1. If the message already carries this id, only make sure it is at least ``sent``.
    2. If an echo of it (``from_me``) arrived before the send response, it created a second outbound
       row with this id: its statuses, timeline, reactions and replies move onto ``message`` and the
       duplicate is deleted. There is then one message, the one the agent sent.
    3. The id is set and ``sent`` applied (``sent_at`` = ``sent_at`` or now).
    4. Statuses parked in DeferredStatus for this id (a status can beat the send response) are folded
       in, forward only, and dropped.
    5. A ``message.updated`` push is registered for after commit.

    An echo arriving after this call just finds the id and changes nothing (see ``_apply_message`` in ``receive``).
    Raises ValueError if the message already has a different provider id, or if the id belongs to an
    inbound message (a provider bug we refuse to paper over).
    """
    if not wa_message_id:
        raise ValueError("a provider message id is required")
    occurred_at = sent_at or timezone.now()
    with transaction.atomic(savepoint=False):
        _lock_wa_message_id(message.channel_id, wa_message_id)
        chat = _chat_lock(message.chat_id)
        message.refresh_from_db()
        if message.wa_message_id and message.wa_message_id != wa_message_id:
            raise ValueError(f"message {message.pk} already has provider id {message.wa_message_id}")
        changed: list[str] = []
        duplicate = (
            Message.objects.filter(channel_id=message.channel_id, wa_message_id=wa_message_id)
            .exclude(pk=message.pk)
            .first()
        )
        if duplicate is not None:
            if duplicate.direction != Message.Direction.OUTBOUND:
                raise ValueError(f"provider id {wa_message_id} belongs to an inbound message")
            changed += _merge_echo_duplicate(message=message, duplicate=duplicate)
        if message.wa_message_id != wa_message_id:
            message.wa_message_id = wa_message_id
            changed.append("wa_message_id")
        for name in _status_merge(None, message, status=Message.Status.SENT, occurred_at=occurred_at):
            if name not in changed:
                changed.append(name)
        if changed:
            message.save(update_fields=[*set(changed), "updated_at"])
        _deferred_statuses_apply(None, message)
        push_message_updated(message)
        if duplicate is not None:
            push_chat_updated(chat)
    return message


def _merge_echo_duplicate(*, message: Message, duplicate: Message) -> list[str]:
    changed: list[str] = []
    for status, time_field in STATUS_TIME_FIELD.items():
        other_time = getattr(duplicate, time_field)
        if other_time is None:
            continue
        mine = getattr(message, time_field)
        if mine is None or other_time < mine:
            setattr(message, time_field, other_time)
            changed.append(time_field)
        if STATUS_RANK[status] > STATUS_RANK.get(message.status, -1):  # type: ignore[call-overload]
            message.status = status
            changed.append("status")
    if duplicate.error_code and not message.error_code:
        message.error_code, message.error_message = duplicate.error_code, duplicate.error_message
        changed += ["error_code", "error_message"]
    if duplicate.deleted_at and not message.deleted_at:
        message.deleted_at = duplicate.deleted_at
        changed.append("deleted_at")
    if message.provider_timestamp is None and duplicate.provider_timestamp is not None:
        message.provider_timestamp = duplicate.provider_timestamp
        changed.append("provider_timestamp")
    # Timeline rows and reactions move; a reactor who reacted on both keeps the newer reaction.
    MessageEvent.objects.filter(message=duplicate).exclude(kind=MessageEvent.Kind.RECEIVED).update(
        message=message
    )
    mine_reactors = set(
        MessageReaction.objects.filter(message=message).values_list("reactor_wa_id", flat=True)
    )
    MessageReaction.objects.filter(message=duplicate).exclude(reactor_wa_id__in=mine_reactors).update(
        message=message
    )
    Message.objects.filter(reply_to=duplicate).update(reply_to=message)
    duplicate_id = duplicate.pk
    duplicate.delete()
    push_message_removed(message_id=duplicate_id, chat_id=message.chat_id)
    return changed
