"""Normalized provider events → chats and messages. The one inbound path for webhooks and the sandbox.

This module holds the entry point and new messages; the rest of the receive path is split by job:
``receive_statuses`` (delivery statuses, deferred ones), ``receive_changes`` (edits, revocations,
reactions, chat updates), ``provider_ids`` (the send response: a sent message's provider id, echo merge),
``media`` (a message's file), ``previews`` (the chat list's line), ``receive_locks`` (the locks and raw
lookups they share), ``receive_context`` (one call's context and result) and ``receive_batch`` (the
webhook drain's fast path for plain inbound messages).

Invariants every function of these modules keeps:

* **Idempotent.** A message is an upsert on (channel, wa_message_id); applying the same events twice
  changes nothing the second time (no second message, no second unread increment, no second timeline row).
* **One chat at a time.** Every write to a chat or its messages holds the chat row lock
  (``SELECT … FOR NO KEY UPDATE``), so unread counts and previews stay right under concurrent workers.
* **One wa_message_id at a time.** Before looking a message up by its provider id we take a
  transaction-scoped advisory lock on (channel, wa_message_id). Without it a status for a not-yet-known
  id could be parked in DeferredStatus at the very moment the sender records that id, and both would
  miss each other. Lock order is always: message-id lock, then chat row lock.
* **Forward only.** Statuses follow one order, ``pending < sent < failed < delivered < read``: failed beats
  sent (Meta accepts a message, then reports it undeliverable), while delivered/read prove the phone got
  it and win over a stray failed. Each status's own timestamp is kept (the earliest seen), so any
  arrival order ends in the same row. A failed status keeps its reason. Previews and
  ``last_message_at`` only move forward; an edit older than the last applied edit is ignored.
* **Side effects after commit.** Realtime pushes and the media download are registered with
  ``on_commit``; nothing here talks to a provider.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from channels_app.models import Channel
from channels_app.providers.base import (
    ChannelStatusUpdate,
    ChatUpdate,
    InboundEvent,
    InboundMessage,
    MessageEdit,
    MessageRevoke,
    ProviderNotice,
    Reaction,
    StatusUpdate,
    UnknownEvent,
)
from channels_app.services import channel_mark_inbound, channel_status_set
from inbox.models import Chat, Contact, Message, MessageEvent
from inbox.realtime import push_message_created, push_message_updated, subscription_lookups_shared
from inbox.services.media import (
    _media_download_on_commit,
    _media_set,
    message_media_failed,
    message_media_store,
)
from inbox.services.previews import _preview
from inbox.services.provider_ids import message_record_provider_id
from inbox.services.receive_changes import _apply_chat_update, _apply_edit, _apply_reaction, _apply_revoke
from inbox.services.receive_context import ApplyResult, _Context
from inbox.services.receive_locks import _lock_wa_message_id, _one, _pk
from inbox.services.receive_statuses import _apply_status, _deferred_statuses_apply, _status_merge

# The entry point, and what moved out when this module was split but callers still import from here.
__all__ = [
    "ApplyResult",
    "inbound_events_apply",
    "message_media_failed",
    "message_media_store",
    "message_record_provider_id",
]

logger = logging.getLogger(__name__)

# Message.Type.values builds a new list on every access (it was 9 % of a webhook worker under load).
MESSAGE_TYPES = frozenset(Message.Type.values)

# Meta: the customer-service window is open for 24 h after the customer's last message.
META_WINDOW = timedelta(hours=24)


# ---------------------------------------------------------------- entry point


def inbound_events_apply(
    *,
    channel: Channel,
    events: list[InboundEvent],
    received_at: datetime | None = None,
    webhook_event_id: int | None = None,
) -> ApplyResult:
    """Apply one delivery's events, in order, in the caller's transaction (or one of its own).

    ``received_at``/``webhook_event_id`` only label timeline rows. Raises on database errors so the
    caller's retry logic can run the whole delivery again (it is idempotent).
    """
    result = ApplyResult()
    context = _Context(
        channel=channel, received_at=received_at or timezone.now(), webhook_event_id=webhook_event_id
    )
    # One subscriptions lookup per workspace for the whole delivery, not one per pushed change.
    with transaction.atomic(savepoint=False), subscription_lookups_shared():
        for event in events:
            if isinstance(event, InboundMessage):
                _apply_message(context, event, result)
            elif isinstance(event, StatusUpdate):
                _apply_status(context, event, result)
            elif isinstance(event, MessageEdit):
                _apply_edit(context, event, result)
            elif isinstance(event, MessageRevoke):
                _apply_revoke(context, event, result)
            elif isinstance(event, Reaction):
                _apply_reaction(context, event, result)
            elif isinstance(event, ChatUpdate):
                _apply_chat_update(context, event, result)
            elif isinstance(event, ChannelStatusUpdate):
                channel_status_set(channel=channel, status=event.status, detail=event.detail)
            elif isinstance(event, ProviderNotice):
                # Meta value.errors: about the number, not a message. Logged for the operator.
                logger.warning("channel %s provider notice %s: %s", channel.pk, event.code, event.message)
                result.notices.append(event)
            elif isinstance(event, UnknownEvent):
                result.unknown_kinds.append(event.kind)
            else:  # pragma: no cover - the union is closed
                result.ignored += 1
        if context.saw_inbound:
            channel_mark_inbound(channel=channel)
    return result


# ---------------------------------------------------------------- chats and contacts


def _chat_get_or_create_locked(
    *, channel: Channel, wa_chat_id: str, is_group: bool, contact_name: str, contact_phone: str
) -> Chat:
    """The chat row, locked, created first if new (ON CONFLICT DO NOTHING, so racing creators agree)."""
    qs = Chat.objects.select_for_update(no_key=True).filter(channel=channel, wa_chat_id=wa_chat_id)
    chat = _one(
        Chat,
        "SELECT * FROM inbox_chat WHERE channel_id = %s AND wa_chat_id = %s",
        _pk(channel),
        wa_chat_id,
        lock=True,
    )
    if chat is not None:
        return chat
    Chat.objects.bulk_create(
        [
            Chat(
                workspace_id=channel.workspace_id,
                channel=channel,
                wa_chat_id=wa_chat_id,
                is_group=is_group,
                contact_name=contact_name[:255],
                contact_phone=contact_phone[:32],
            )
        ],
        ignore_conflicts=True,
    )
    chat = qs.get()
    if not is_group and chat.contact_id is None:
        chat.contact = _contact_upsert(channel=channel, wa_id=wa_chat_id.split("@")[0], name=contact_name)
        chat.save(update_fields=["contact", "updated_at"])
    return chat


def _contact_upsert(*, channel: Channel, wa_id: str, name: str) -> Contact:
    Contact.objects.bulk_create(
        [Contact(channel=channel, wa_id=wa_id[:64], name=name[:255], phone_number=wa_id[:32])],
        ignore_conflicts=True,
    )
    contact = Contact.objects.get(channel=channel, wa_id=wa_id[:64])
    if name and contact.name != name:
        contact.name = name[:255]
        contact.save(update_fields=["name", "updated_at"])
    return contact


# ---------------------------------------------------------------- messages


def _chat_touch_for_message(chat: Chat, message: Message, *, channel: Channel, inbound: bool) -> None:
    """Preview/last_message_at forward only; unread +1 for the customer's messages; Meta window end."""
    fields: dict[str, Any] = {}
    if chat.last_message_at is None or message.sort_at >= chat.last_message_at:
        fields["last_message_preview"] = _preview(message)
        fields["last_message_at"] = message.sort_at
    if inbound:
        fields["unread_count"] = F("unread_count") + 1
        if chat.status == Chat.Status.RESOLVED:
            # The customer wrote again: the conversation is open again.
            fields["status"] = Chat.Status.OPEN
        if channel.provider == Channel.Provider.META and message.provider_timestamp is not None:
            window_end = message.provider_timestamp + META_WINDOW
            if chat.window_expires_at is None or window_end > chat.window_expires_at:
                fields["window_expires_at"] = window_end
    if chat.archived:
        fields["archived"] = False
    if not fields:
        return
    fields["updated_at"] = timezone.now()
    Chat.objects.filter(pk=chat.pk).update(**fields)
    for name, value in fields.items():
        if name != "unread_count":
            setattr(chat, name, value)
    if "unread_count" in fields:
        chat.unread_count += 1


def _apply_message(context: _Context, event: InboundMessage, result: ApplyResult) -> None:
    channel = context.channel
    if not event.wa_message_id or not event.wa_chat_id:
        result.ignored += 1
        return
    _lock_wa_message_id(channel.pk, event.wa_message_id)
    chat = _chat_get_or_create_locked(
        channel=channel,
        wa_chat_id=event.wa_chat_id,
        is_group=event.is_group,
        contact_name=event.contact_name,
        contact_phone=event.contact_phone,
    )
    if event.contact_name and event.contact_name != chat.contact_name:
        chat.contact_name = event.contact_name[:255]
        chat.save(update_fields=["contact_name", "updated_at"])
        if chat.contact_id and not chat.is_group:
            Contact.objects.filter(pk=chat.contact_id).update(
                name=chat.contact_name, updated_at=timezone.now()
            )

    existing = _one(
        Message,
        "SELECT * FROM inbox_message WHERE channel_id = %s AND wa_message_id = %s",
        _pk(channel),
        event.wa_message_id,
    )
    if existing is not None:
        # A redelivery, or the echo of a message we sent and already recorded: one message, never two.
        result.messages_duplicate += 1
        if event.from_me and existing.direction == Message.Direction.OUTBOUND:
            changed = _status_merge(
                context, existing, status=Message.Status.SENT, occurred_at=event.timestamp
            )
            if changed:
                existing.save(update_fields=[*changed, "updated_at"])
                push_message_updated(existing)
                result.messages_updated += 1
        return

    if not event.from_me:
        context.saw_inbound = True
    media = event.media
    message = Message(
        chat=chat,
        channel=channel,
        wa_message_id=event.wa_message_id,
        direction=Message.Direction.OUTBOUND if event.from_me else Message.Direction.INBOUND,
        type=event.type if event.type in MESSAGE_TYPES else Message.Type.UNSUPPORTED,
        text=event.text,
        # An echo without an outbound row was sent from the phone: the provider already has it.
        status=Message.Status.SENT if event.from_me else Message.Status.RECEIVED,
        author_wa_id=event.author_wa_id[:64],
        author_name=event.author_name[:255],
        reply_to_wa_id=event.reply_to_wa_id[:255],
        provider_timestamp=event.timestamp,
        sort_at=event.timestamp,
        sent_at=event.timestamp if event.from_me else None,
        payload=event.payload,
    )
    if event.reply_to_wa_id:
        message.reply_to = Message.objects.filter(channel=channel, wa_message_id=event.reply_to_wa_id).first()
    if media is not None:
        _media_set(message, media)
    message.save()
    result.messages_created += 1

    MessageEvent.objects.create(
        message=message,
        kind=MessageEvent.Kind.RECEIVED,
        detail=context.event_detail(provider_timestamp=event.timestamp.isoformat()),
        occurred_at=context.received_at,
    )
    if event.from_me:
        MessageEvent.objects.create(
            message=message,
            kind=MessageEvent.Kind.SENT,
            detail=context.event_detail(echo=True),
            occurred_at=event.timestamp,
        )
    _deferred_statuses_apply(context, message)
    _chat_touch_for_message(chat, message, channel=channel, inbound=not event.from_me)
    push_message_created(message, chat)
    if message.media_status == Message.MediaStatus.PENDING:
        _media_download_on_commit(message.pk)
