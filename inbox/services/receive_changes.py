"""Changes to what is already stored: message edits, revocations, reactions and the provider's chat updates."""

from __future__ import annotations

from django.utils import timezone

from channels_app.providers.base import ChatUpdate, MessageEdit, MessageRevoke, Reaction
from inbox.models import Chat, Message, MessageEvent, MessageReaction
from inbox.realtime import push_chat_updated, push_message_updated
from inbox.services.previews import DELETED_PREVIEW, _preview
from inbox.services.receive_context import ApplyResult, _Context
from inbox.services.receive_locks import _chat_lock, _lock_wa_message_id

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
