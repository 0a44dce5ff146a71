"""Many customers' messages at once: the webhook drain's fast path for plain inbound messages.

Most webhook deliveries are one new message from a customer. Applied one delivery at a time, each cost
about ten statements and a commit (docs/performance.md); here a whole drain batch of them costs about
ten statements and one commit, with the same end state as applying them one by one through
``inbound_events_apply`` in order, and the same invariants (see ``receive.py``):

* the same locks in the same order: every provider-id lock first (sorted, so two batches cannot
  deadlock on them), then the chat rows (existing ones in id order, new ones created in wa_chat_id order);
* idempotent: an id already stored, or repeated inside the batch, is a duplicate and changes nothing;
* chats move forward only: the preview and ``last_message_at`` follow the newest message, unread counts
  add up, a resolved chat reopens, an archived one comes back, Meta's window end only moves later;
* side effects after commit: the pushes, the ``pushed`` timeline rows and media downloads.

Only plain inbound messages qualify (``inbound_messages_batchable``); echoes of our own messages, statuses,
edits, revocations, reactions and chat updates take the one-by-one path, which merges and looks up what
these never need. Postgres only (``unnest``, advisory locks); the embedded SQLite mode applies one by one.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from channels_app.models import Channel
from channels_app.providers.base import InboundEvent, InboundMessage
from channels_app.services import channel_mark_inbound
from config.bulk_sql import json_value, rows_insert
from inbox.models import Chat, Contact, Message, MessageEvent
from inbox.realtime import push_chats_updated, push_messages_created, subscription_lookups_shared
from inbox.services.media import _media_download_on_commit, _media_set
from inbox.services.previews import _preview
from inbox.services.receive import MESSAGE_TYPES, META_WINDOW
from inbox.services.receive_context import ApplyResult
from inbox.services.receive_locks import _pk


@dataclass(frozen=True)
class ReceivedMessage:
    """One inbound message and the delivery that brought it (for its ``received`` timeline row)."""

    event: InboundMessage
    received_at: datetime
    webhook_event_id: int | None = None


def inbound_messages_batchable(events: list[InboundEvent]) -> bool:
    """True when every event of a delivery is a customer's message this fast path can apply."""
    return bool(events) and all(
        isinstance(event, InboundMessage) and not event.from_me and event.wa_message_id and event.wa_chat_id
        for event in events
    )


def inbound_messages_apply_batch(*, channel: Channel, received: list[ReceivedMessage]) -> ApplyResult:
    """Apply customers' messages to one number's chats, in order, in the caller's transaction (or its own).

    Raises on database errors (a deadlock with a one-by-one processor included): the caller rolls back and
    applies the deliveries one by one instead.
    """
    if connection.vendor != "postgresql":
        raise RuntimeError("the batch path needs Postgres; apply one by one with inbound_events_apply")
    result = ApplyResult()
    if not received:
        return result
    with transaction.atomic(savepoint=False), subscription_lookups_shared():
        wa_message_ids = sorted({item.event.wa_message_id for item in received})
        _lock_wa_message_ids(channel, wa_message_ids)
        chats = _chats_locked(channel, received)
        known = _stored_wa_message_ids(channel, wa_message_ids)
        new: list[ReceivedMessage] = []
        for item in received:
            if item.event.wa_message_id in known:
                result.messages_duplicate += 1  # stored before, or earlier in this batch
                continue
            known.add(item.event.wa_message_id)
            new.append(item)
        renamed = _contact_names_update(received, chats)
        messages = _messages_insert(channel, chats, new)
        result.messages_created = len(messages)
        touched = _chats_touch(channel, chats, messages, renamed)
        if messages:
            push_messages_created(messages, touched)
            for message in messages:
                if message.media_status == Message.MediaStatus.PENDING:
                    _media_download_on_commit(message.pk)
            channel_mark_inbound(channel=channel)
        elif touched:
            push_chats_updated(touched)  # only renamed: every delivery was a repeat
        result.chats_updated = len(touched)
    return result


def _lock_wa_message_ids(channel: Channel, wa_message_ids: list[str]) -> None:
    """``receive._lock_wa_message_id`` for many ids, in sorted order (the caller sorts)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('wamid:' || %s || ':' || k, 0)) "
            "FROM (SELECT k FROM unnest(%s::text[]) AS k ORDER BY k) AS ids",
            [str(channel.pk), wa_message_ids],
        )


def _chats_locked(channel: Channel, received: list[ReceivedMessage]) -> dict[str, Chat]:
    """The batch's chats by wa_chat_id, each row locked; chats seen for the first time are created."""
    first_seen: dict[str, InboundMessage] = {}
    for item in received:
        first_seen.setdefault(item.event.wa_chat_id, item.event)
    chats = _chats_select_locked(channel, sorted(first_seen))
    missing = sorted(set(first_seen) - set(chats))
    if missing:
        chats.update(_chats_create_locked(channel, [first_seen[wa_chat_id] for wa_chat_id in missing]))
    return chats


def _chats_select_locked(channel: Channel, wa_chat_ids: list[str]) -> dict[str, Chat]:
    return {
        chat.wa_chat_id: chat
        for chat in Chat.objects.raw(
            "SELECT * FROM inbox_chat WHERE channel_id = %s AND wa_chat_id = ANY(%s) ORDER BY id "
            "FOR NO KEY UPDATE",
            [_pk(channel), wa_chat_ids],
        )
    }


def _chats_create_locked(channel: Channel, first_messages: list[InboundMessage]) -> dict[str, Chat]:
    """``receive._chat_get_or_create_locked`` for many new chats: created in wa_chat_id order (ON CONFLICT
    DO NOTHING, so racing creators agree and two batches wait for each other in one order), each customer's
    contact with it."""
    Chat.objects.bulk_create(
        [
            Chat(
                workspace_id=channel.workspace_id,
                channel=channel,
                wa_chat_id=event.wa_chat_id,
                is_group=event.is_group,
                contact_name=event.contact_name[:255],
                contact_phone=event.contact_phone[:32],
            )
            for event in first_messages
        ],
        ignore_conflicts=True,
    )
    chats = _chats_select_locked(channel, [event.wa_chat_id for event in first_messages])
    names = {event.wa_chat_id: event.contact_name[:255] for event in first_messages}
    without_contact = [chat for chat in chats.values() if not chat.is_group and chat.contact_id is None]
    if not without_contact:
        return chats
    wa_ids = {chat.pk: chat.wa_chat_id.split("@")[0][:64] for chat in without_contact}
    Contact.objects.bulk_create(
        [
            Contact(
                channel=channel,
                wa_id=wa_ids[chat.pk],
                name=names[chat.wa_chat_id],
                phone_number=wa_ids[chat.pk][:32],
            )
            for chat in without_contact
        ],
        ignore_conflicts=True,
    )
    contacts = {
        contact.wa_id: contact
        for contact in Contact.objects.filter(channel=channel, wa_id__in=wa_ids.values())
    }
    for chat in without_contact:
        contact = contacts[wa_ids[chat.pk]]
        name = names[chat.wa_chat_id]
        if name and contact.name != name:  # a contact kept from an earlier chat: the newest name wins
            Contact.objects.filter(pk=contact.pk).update(name=name, updated_at=timezone.now())
        chat.contact = contact
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE inbox_chat AS c SET contact_id = v.contact_id FROM unnest(%s::bigint[], %s::bigint[]) "
            "AS v(id, contact_id) WHERE c.id = v.id",
            [[chat.pk for chat in without_contact], [chat.contact_id for chat in without_contact]],
        )
    return chats


def _stored_wa_message_ids(channel: Channel, wa_message_ids: list[str]) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT wa_message_id FROM inbox_message WHERE channel_id = %s AND wa_message_id = ANY(%s)",
            [_pk(channel), wa_message_ids],
        )
        return {row[0] for row in cursor.fetchall()}


def _contact_names_update(received: list[ReceivedMessage], chats: dict[str, Chat]) -> set[int]:
    """The customer's latest profile name wins, as it would applied one by one (duplicates included).
    Returns the renamed chats' ids (their rows are written with the rest in ``_chats_touch``)."""
    renamed: set[int] = set()
    for item in received:
        name = item.event.contact_name[:255]
        chat = chats[item.event.wa_chat_id]
        if name and name != chat.contact_name:
            chat.contact_name = name
            if chat.contact_id and not chat.is_group:
                Contact.objects.filter(pk=chat.contact_id).update(name=name, updated_at=timezone.now())
            renamed.add(chat.pk)
    return renamed


def _messages_insert(channel: Channel, chats: dict[str, Chat], new: list[ReceivedMessage]) -> list[Message]:
    if not new:
        return []
    quoted = {item.event.reply_to_wa_id for item in new if item.event.reply_to_wa_id}
    quoted_ids = _message_ids_by_wa_id(channel, sorted(quoted)) if quoted else {}
    messages = [_message_for(channel, chats[item.event.wa_chat_id], item.event) for item in new]
    for message in messages:
        message.reply_to_id = quoted_ids.get(message.reply_to_wa_id)
    rows_insert(Message, messages)
    # A reply to a message earlier in this same batch: one by one, that message would have existed already.
    created_ids = {message.wa_message_id: message.pk for message in messages}
    for message in messages:
        if message.reply_to_wa_id and message.reply_to_id is None and message.reply_to_wa_id in created_ids:
            message.reply_to_id = created_ids[message.reply_to_wa_id]
            Message.objects.filter(pk=message.pk).update(reply_to_id=message.reply_to_id)
    rows_insert(
        MessageEvent,
        [
            MessageEvent(
                message=message,
                kind=MessageEvent.Kind.RECEIVED,
                detail=_event_detail(item, message),
                occurred_at=item.received_at,
            )
            for item, message in zip(new, messages, strict=True)
        ],
    )
    # Statuses parked for these ids mean nothing on a customer's message: drop them, as one by one does.
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM inbox_deferredstatus WHERE channel_id = %s AND wa_message_id = ANY(%s)",
            [_pk(channel), list(created_ids)],
        )
    return messages


def _message_ids_by_wa_id(channel: Channel, wa_message_ids: list[str]) -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT wa_message_id, id FROM inbox_message WHERE channel_id = %s AND wa_message_id = ANY(%s)",
            [_pk(channel), wa_message_ids],
        )
        return dict(cursor.fetchall())


def _message_for(channel: Channel, chat: Chat, event: InboundMessage) -> Message:
    """The same row ``receive._apply_message`` writes for a customer's message."""
    message = Message(
        chat=chat,
        channel=channel,
        wa_message_id=event.wa_message_id,
        direction=Message.Direction.INBOUND,
        type=event.type if event.type in MESSAGE_TYPES else Message.Type.UNSUPPORTED,
        text=event.text,
        status=Message.Status.RECEIVED,
        author_wa_id=event.author_wa_id[:64],
        author_name=event.author_name[:255],
        reply_to_wa_id=event.reply_to_wa_id[:255],
        provider_timestamp=event.timestamp,
        sort_at=event.timestamp,
        payload=event.payload,
    )
    if event.media is not None:
        _media_set(message, event.media)
    return message


def _event_detail(item: ReceivedMessage, message: Message) -> dict[str, object]:
    detail: dict[str, object] = {"source": "webhook" if item.webhook_event_id else "provider"}
    if item.webhook_event_id:
        detail["webhook_event_id"] = item.webhook_event_id
    detail["provider_timestamp"] = item.event.timestamp.isoformat()
    return detail


CHAT_COLUMNS_TOUCHED = (
    "id",
    "contact_name",
    "last_message_preview",
    "last_message_at",
    "unread_count",
    "status",
    "window_expires_at",
    "archived",
    "updated_at",
)
CHATS_UPDATE_SQL = """
UPDATE inbox_chat AS c
SET contact_name = v.contact_name, last_message_preview = v.last_message_preview,
    last_message_at = v.last_message_at, unread_count = v.unread_count, status = v.status,
    window_expires_at = v.window_expires_at, archived = v.archived, updated_at = v.updated_at
FROM jsonb_populate_recordset(NULL::inbox_chat, %s::jsonb) AS v
WHERE c.id = v.id
"""


def _chats_touch(
    channel: Channel, chats: dict[str, Chat], messages: list[Message], renamed: set[int]
) -> list[Chat]:
    """``receive._chat_touch_for_message`` for each new message, in order, written once per chat.

    The rows are locked, so the values read with the lock plus this batch's messages are the new values.
    Returns the chats that changed.
    """
    by_chat: dict[int, list[Message]] = defaultdict(list)
    for message in messages:
        by_chat[message.chat_id].append(message)
    touched = [chat for chat in chats.values() if chat.pk in by_chat or chat.pk in renamed]
    for chat in touched:
        for message in by_chat.get(chat.pk, []):
            if chat.last_message_at is None or message.sort_at >= chat.last_message_at:
                chat.last_message_preview = _preview(message)
                chat.last_message_at = message.sort_at
            chat.unread_count += 1
            if chat.status == Chat.Status.RESOLVED:
                chat.status = Chat.Status.OPEN  # the customer wrote again: the conversation is open again
            if channel.provider == Channel.Provider.META and message.provider_timestamp is not None:
                window_end = message.provider_timestamp + META_WINDOW
                if chat.window_expires_at is None or window_end > chat.window_expires_at:
                    chat.window_expires_at = window_end
            chat.archived = False
    if not touched:
        return []
    now = timezone.now()
    for chat in touched:
        chat.updated_at = now
    changed = CHAT_COLUMNS_TOUCHED
    rows = [{name: json_value(getattr(chat, name)) for name in changed} for chat in touched]
    with connection.cursor() as cursor:
        cursor.execute(CHATS_UPDATE_SQL, [json.dumps(rows)])
    return touched
