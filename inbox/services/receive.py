"""Normalized provider events → chats and messages. The one inbound path for webhooks and the sandbox.

Invariants every function here keeps:

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
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from channels_app.models import Channel
from channels_app.providers.base import (
    ChannelStatusUpdate,
    ChatUpdate,
    InboundEvent,
    InboundMessage,
    MediaInfo,
    MessageEdit,
    MessageRevoke,
    ProviderNotice,
    Reaction,
    StatusUpdate,
    UnknownEvent,
)
from channels_app.services import channel_mark_inbound, channel_status_set
from inbox.models import Chat, Contact, DeferredStatus, Message, MessageEvent, MessageReaction
from inbox.realtime import (
    push_chat_updated,
    push_message_created,
    push_message_removed,
    push_message_updated,
    subscription_lookups_shared,
)

logger = logging.getLogger(__name__)

# Message.Type.values builds a new list on every access (it was 9 % of a webhook worker under load).
MESSAGE_TYPES = frozenset(Message.Type.values)

# The order statuses may only move forward in (see the module docstring for failed's place).
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
# Meta: the customer-service window is open for 24 h after the customer's last message.
META_WINDOW = timedelta(hours=24)
PREVIEW_LABELS = {
    Message.Type.IMAGE: "📷 Photo",
    Message.Type.VIDEO: "🎥 Video",
    Message.Type.AUDIO: "🎵 Audio",
    Message.Type.VOICE: "🎤 Voice message",
    Message.Type.DOCUMENT: "📄 Document",
    Message.Type.STICKER: "Sticker",
    Message.Type.LOCATION: "📍 Location",
    Message.Type.CONTACTS: "👤 Contact",
    Message.Type.UNSUPPORTED: "Unsupported message",
}
DELETED_PREVIEW = "🚫 This message was deleted"


@dataclass
class ApplyResult:
    """What one call did; the webhook processor logs it and marks unknown events."""

    messages_created: int = 0
    messages_duplicate: int = 0
    messages_updated: int = 0
    statuses_applied: int = 0
    statuses_deferred: int = 0
    chats_updated: int = 0
    ignored: int = 0
    unknown_kinds: list[str] = field(default_factory=list)
    notices: list[ProviderNotice] = field(default_factory=list)


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


@dataclass
class _Context:
    channel: Channel
    received_at: datetime
    webhook_event_id: int | None
    saw_inbound: bool = False

    def event_detail(self, **extra: Any) -> dict[str, Any]:
        detail: dict[str, Any] = {"source": "webhook" if self.webhook_event_id else "provider"}
        if self.webhook_event_id:
            detail["webhook_event_id"] = self.webhook_event_id
        detail.update(extra)
        return detail


# ---------------------------------------------------------------- hot-path lookups
# The lookups every inbound message makes, as plain SQL through the models (``raw``): building them with
# the ORM's query compiler cost more CPU than running them (py-spy, docs/performance.md).


def _pk(channel_or_id: Any) -> Any:
    """A channel id as the database stores it (a UUID on Postgres, hex text on SQLite)."""
    value = getattr(channel_or_id, "pk", channel_or_id)
    return Channel._meta.pk.get_db_prep_value(value, connection)  # type: ignore[union-attr]


def _one(model: Any, sql: str, *params: Any, lock: bool = False) -> Any:
    """The first row of ``sql`` as a model instance, or None; ``lock`` takes the row's lock (Postgres; SQLite
    has one writer at a time)."""
    sql += " LIMIT 1"
    if lock and connection.vendor == "postgresql":
        sql += " FOR NO KEY UPDATE"
    return next(iter(model.objects.raw(sql, list(params))), None)


# ---------------------------------------------------------------- locks


def _lock_wa_message_id(channel_id: Any, wa_message_id: str) -> None:
    """Serialize everything that looks up or assigns this provider message id (see module docstring)."""
    if connection.vendor != "postgresql":
        return  # SQLite (embedded mode) runs one writer at a time anyway.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"wamid:{channel_id}:{wa_message_id}"]
        )


def _chat_lock(chat_id: int) -> Chat:
    return Chat.objects.select_for_update(no_key=True).get(pk=chat_id)


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


def _preview(message: Message) -> str:
    if message.deleted_at is not None:
        return DELETED_PREVIEW
    label = PREVIEW_LABELS.get(message.type, "")  # type: ignore[call-overload]
    text = message.text.strip()
    if label and text:
        return f"{label}: {text}"[:255]
    return (text or label)[:255]


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


def _media_set(message: Message, media: MediaInfo) -> None:
    """The provider's file reference on the message; a file to fetch makes its media ``pending``."""
    message.media_id = media.media_id[:255]
    message.media_url = media.url[:2000]
    message.media_mime_type = media.mime_type[:128]
    message.media_sha256 = media.sha256[:128]
    message.media_size = media.size
    message.media_filename = media.filename[:255]
    if media.media_id or media.url:
        message.media_status = Message.MediaStatus.PENDING


def _media_download_on_commit(message_id: int) -> None:
    from inbox.tasks import message_media_download  # the task module imports services: import late

    transaction.on_commit(lambda: message_media_download.delay(message_id))


# ---------------------------------------------------------------- statuses


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


# ---------------------------------------------------------------- edits, revokes, reactions


def _locked_target(context: _Context, wa_message_id: str) -> tuple[Message, Chat] | None:
    if not wa_message_id:
        return None
    _lock_wa_message_id(context.channel.pk, wa_message_id)
    message = Message.objects.filter(channel=context.channel, wa_message_id=wa_message_id).first()
    if message is None:
        return None
    chat = _chat_lock(message.chat_id)
    message.refresh_from_db()
    return message, chat


def _apply_edit(context: _Context, event: MessageEdit, result: ApplyResult) -> None:
    target = _locked_target(context, event.wa_message_id)
    if target is None:
        result.ignored += 1
        return
    message, chat = target
    if message.edited_at is not None and event.timestamp <= message.edited_at:
        result.ignored += 1  # a redelivery, or an older edit arriving late
        return
    if event.text == message.text:
        result.ignored += 1
        return
    previous = message.text
    if message.edited_at is None:
        # previous_text keeps what the customer first wrote; every edit is also in the timeline.
        message.previous_text = previous
    message.text = event.text
    message.edited_at = event.timestamp
    message.save(update_fields=["text", "previous_text", "edited_at", "updated_at"])
    MessageEvent.objects.create(
        message=message,
        kind=MessageEvent.Kind.EDITED,
        detail=context.event_detail(previous_text=previous, text=event.text),
        occurred_at=event.timestamp,
    )
    if chat.last_message_at == message.sort_at:
        Chat.objects.filter(pk=chat.pk).update(
            last_message_preview=_preview(message), updated_at=timezone.now()
        )
        push_chat_updated(chat)
    push_message_updated(message)
    result.messages_updated += 1


def _apply_revoke(context: _Context, event: MessageRevoke, result: ApplyResult) -> None:
    target = _locked_target(context, event.wa_message_id)
    if target is None:
        result.ignored += 1
        return
    message, chat = target
    if message.deleted_at is not None:
        result.ignored += 1
        return
    # Soft delete: hidden in the inbox, the text stays for audit.
    message.deleted_at = event.timestamp
    message.save(update_fields=["deleted_at", "updated_at"])
    MessageEvent.objects.create(
        message=message,
        kind=MessageEvent.Kind.DELETED,
        detail=context.event_detail(),
        occurred_at=event.timestamp,
    )
    if chat.last_message_at == message.sort_at:
        Chat.objects.filter(pk=chat.pk).update(
            last_message_preview=DELETED_PREVIEW, updated_at=timezone.now()
        )
        push_chat_updated(chat)
    push_message_updated(message)
    result.messages_updated += 1


def _apply_reaction(context: _Context, event: Reaction, result: ApplyResult) -> None:
    target = _locked_target(context, event.target_wa_message_id)
    if target is None or not event.reactor_wa_id:
        result.ignored += 1
        return
    message, _chat = target
    existing = MessageReaction.objects.filter(message=message, reactor_wa_id=event.reactor_wa_id[:64]).first()
    if existing is not None and event.timestamp < existing.reacted_at:
        result.ignored += 1  # an older reaction arriving late
        return
    if not event.emoji:
        if existing is None:
            result.ignored += 1
            return
        existing.delete()
    elif existing is None:
        MessageReaction.objects.create(
            message=message,
            reactor_wa_id=event.reactor_wa_id[:64],
            emoji=event.emoji[:32],
            wa_message_id=event.wa_message_id[:255],
            reacted_at=event.timestamp,
        )
    elif existing.emoji == event.emoji:
        result.ignored += 1
        return
    else:
        existing.emoji = event.emoji[:32]
        existing.wa_message_id = event.wa_message_id[:255]
        existing.reacted_at = event.timestamp
        existing.save(update_fields=["emoji", "wa_message_id", "reacted_at"])
    # The bubble shows its reactions: a page re-syncing after a disconnect asks for messages by updated_at.
    Message.objects.filter(pk=message.pk).update(updated_at=timezone.now())
    push_message_updated(message)
    result.messages_updated += 1


# ---------------------------------------------------------------- chats


def _apply_chat_update(context: _Context, event: ChatUpdate, result: ApplyResult) -> None:
    """Whapi chats.post/patch/delete. Only chats we already have: a chat starts with its first message.

    The phone's own unread counter is not copied: the inbox counts what agents have not seen.
    """
    chat = (
        Chat.objects.select_for_update(no_key=True)
        .filter(channel=context.channel, wa_chat_id=event.wa_chat_id)
        .first()
    )
    if chat is None:
        result.ignored += 1
        return
    fields: list[str] = []
    if event.action == "delete":
        if not chat.archived:
            chat.archived = True  # kept for audit; a new message brings it back
            fields.append("archived")
    else:
        if event.name and event.name != chat.contact_name:
            chat.contact_name = event.name[:255]
            fields.append("contact_name")
        if event.is_group and not chat.is_group:
            chat.is_group = True
            fields.append("is_group")
    if fields:
        chat.save(update_fields=[*fields, "updated_at"])
        push_chat_updated(chat)
        result.chats_updated += 1
    else:
        result.ignored += 1


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

    An echo arriving after this call just finds the id and changes nothing (see ``_apply_message``).
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


# ---------------------------------------------------------------- media files


def message_media_store(*, message: Message, content: bytes, mime_type: str = "") -> Message:
    """Keep a downloaded media file in Django storage and mark the message's media stored."""
    from django.core.files.base import ContentFile

    extension = _extension_for(mime_type or message.media_mime_type)
    name = message.media_filename or f"{message.wa_message_id or message.pk}{extension}"
    with transaction.atomic(savepoint=False):
        locked = Message.objects.select_for_update(no_key=True).get(pk=message.pk)
        if locked.media_status == Message.MediaStatus.STORED:
            return locked  # a retried task after a success: keep the first file
        locked.media_file.save(_safe_name(name), ContentFile(content), save=False)
        locked.media_status = Message.MediaStatus.STORED
        fields = ["media_file", "media_status", "updated_at"]
        if mime_type and not locked.media_mime_type:
            locked.media_mime_type = mime_type[:128]
            fields.append("media_mime_type")
        if locked.media_size is None:
            locked.media_size = len(content)
            fields.append("media_size")
        locked.save(update_fields=fields)
        push_message_updated(locked)
    return locked


def message_media_failed(*, message: Message, reason: str) -> Message:
    """The download gave up: the message stays, its bubble says the file could not be fetched."""
    with transaction.atomic(savepoint=False):
        updated = Message.objects.filter(pk=message.pk, media_status=Message.MediaStatus.PENDING).update(
            media_status=Message.MediaStatus.FAILED, updated_at=timezone.now()
        )
        if updated:
            message.media_status = Message.MediaStatus.FAILED
            logger.warning("media of message %s not downloaded: %s", message.pk, reason)
            push_message_updated(message)
    return message


def _extension_for(mime_type: str) -> str:
    import mimetypes

    return mimetypes.guess_extension(mime_type.split(";")[0].strip()) or "" if mime_type else ""


def _safe_name(name: str) -> str:
    import re

    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "media"
    return cleaned[-100:]
