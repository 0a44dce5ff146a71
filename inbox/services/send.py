"""Outbound messages: an agent's send, its retry button, and the inbox side of the outbox's results.

``message_send`` writes the Message (``pending``) and its OutboxMessage (``queued``) in one transaction
and returns; a drain sends it after commit (``outbox``). The outbox reports back through
``inbox.services.outbox_hooks.OUTBOX_HOOKS`` (timeline rows, status, realtime pushes), so every Message
write stays in the inbox.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from django.core.files.base import File
from django.db import IntegrityError, transaction
from django.utils import timezone

from channels_app.models import Channel
from inbox.access import access_message
from inbox.errors import ChannelUnavailableError, ClientMessageIdConflict, InboxError, WindowClosedError
from inbox.models import Chat, Message, MessageEvent
from inbox.realtime import (
    push_message_created,
    push_message_updated,
)
from inbox.services.previews import PREVIEW_LABELS
from outbox.models import OutboxMessage
from outbox.services import OutboxError, outbox_enqueue, outbox_requeue_for_retry
from tenants.services import audit_record

MEDIA_TYPES = {Message.Type.IMAGE, Message.Type.VIDEO, Message.Type.AUDIO, Message.Type.DOCUMENT}
SENDABLE_TYPES = {Message.Type.TEXT, Message.Type.TEMPLATE, *MEDIA_TYPES}
MAX_TEXT_LENGTH = 4096  # Meta's limit for a text body; Whapi accepts the same
MAX_CAPTION_LENGTH = 1024
OUTBOX_MESSAGE_TYPE = "message"


def _fingerprint(
    *,
    type: str,
    text: str,
    media_url: str,
    media_digest: str,
    filename: str,
    caption: str,
    template: dict[str, Any] | None,
    reply_to_id: int | None,
) -> str:
    """What makes two sends "the same body" for client_message_id idempotency."""
    body = {
        "type": type,
        "text": text,
        "media_url": media_url,
        "media": media_digest,
        "filename": filename,
        "caption": caption,
        "template": template or None,
        "reply_to": reply_to_id,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _file_digest(media_file: Any) -> str:
    digest = hashlib.sha256()
    if hasattr(media_file, "seek"):
        media_file.seek(0)
    for chunk in (
        media_file.chunks() if hasattr(media_file, "chunks") else iter(lambda: media_file.read(65536), b"")
    ):
        digest.update(chunk)
    if hasattr(media_file, "seek"):
        media_file.seek(0)
    return digest.hexdigest()


def _window_open(chat: Chat, now: datetime) -> bool:
    return chat.window_expires_at is not None and chat.window_expires_at > now


def _validate(
    *,
    chat: Chat,
    type: str,
    text: str,
    media_url: str,
    media_file: Any,
    caption: str,
    template: dict[str, Any] | None,
    reply_to: Message | None,
    now: datetime,
) -> None:
    channel = chat.channel
    if type not in SENDABLE_TYPES:
        raise InboxError(
            f"cannot send a {type!r} message: use text, image, video, audio, document or template"
        )
    if channel.status == Channel.Status.DISCONNECTED:
        raise ChannelUnavailableError(
            f"{channel.display_name} is disconnected ({channel.status_detail or 'token invalid'}): "
            "an admin must reconnect it before messages can be sent"
        )
    if type == Message.Type.TEXT:
        if not text.strip():
            raise InboxError("a message needs some text")
        if len(text) > MAX_TEXT_LENGTH:
            raise InboxError(f"a message can be at most {MAX_TEXT_LENGTH} characters long")
    if type in MEDIA_TYPES:
        if not media_url and media_file is None:
            raise InboxError(f"attach a file or give a link to send a {type}")
        if media_url and not media_url.lower().startswith(("https://", "http://")):
            raise InboxError("a media link must start with https://")
        if len(caption) > MAX_CAPTION_LENGTH:
            raise InboxError(f"a caption can be at most {MAX_CAPTION_LENGTH} characters long")
    if type == Message.Type.TEMPLATE:
        if channel.provider != Channel.Provider.META:
            raise InboxError("templates are a Meta Cloud API feature; this number sends free text instead")
        if not template or not template.get("name"):
            raise InboxError("a template message needs the template's name")
        if not template.get("language"):
            raise InboxError("a template message needs the template's language code, e.g. en_US")
        if not isinstance(template.get("components", []), list):
            raise InboxError("template components must be a list")
    elif channel.provider == Channel.Provider.META and not _window_open(chat, now):
        raise WindowClosedError(
            "The 24-hour customer-service window for this chat is closed (the customer has not written in the "
            "last 24 hours): only an approved template can be sent."
        )
    if reply_to is not None and reply_to.chat_id != chat.pk:
        raise InboxError("you can only reply to a message in the same chat")


def message_send(
    *,
    chat: Chat,
    sender: Any,
    client_message_id: str,
    text: str = "",
    type: str = "text",
    media_url: str = "",
    media_file: Any = None,
    filename: str = "",
    caption: str = "",
    template: dict[str, Any] | None = None,
    reply_to: Message | None = None,
) -> Message:
    """Queue an outbound message; returns the (pending) Message at once.

    1. Refuse what cannot be sent (unknown type, empty text, closed Meta window for anything but a
       template, a disconnected number) with an InboxError subclass whose text an agent can read.
    2. A ``client_message_id`` already used in this number returns that message when the body is the
       same (a double-click or a retried POST), and raises ClientMessageIdConflict otherwise.
    3. Write the Message, its "queued" timeline row and its outbox row in the caller's transaction
       (or one of our own); touch the chat's preview; push ``message.created`` after commit. The outbox
       kicks a drain after commit.
    """
    now = timezone.now()
    client_message_id = (client_message_id or "").strip()
    if not client_message_id:
        raise InboxError("client_message_id is required (it makes a repeated send harmless)")
    if len(client_message_id) > 128:
        raise InboxError("client_message_id can be at most 128 characters")
    channel = chat.channel
    type = type or Message.Type.TEXT
    text = text or ""
    filename = (filename or getattr(media_file, "name", "") or "").rsplit("/", 1)[-1][:255]
    fingerprint = _fingerprint(
        type=type,
        text=text,
        media_url=media_url,
        media_digest=_file_digest(media_file) if media_file is not None else "",
        filename=filename,
        caption=caption,
        template=template,
        reply_to_id=reply_to.pk if reply_to is not None else None,
    )

    existing = Message.objects.filter(channel=channel, client_message_id=client_message_id).first()
    if existing is not None:
        return _same_or_conflict(existing, fingerprint)

    _validate(
        chat=chat,
        type=type,
        text=text,
        media_url=media_url,
        media_file=media_file,
        caption=caption,
        template=template,
        reply_to=reply_to,
        now=now,
    )
    mime_type = getattr(media_file, "content_type", "") or ""
    with transaction.atomic(savepoint=False):
        # The chat lock serializes sends in one chat, so outbox rows (and so the wire order) follow the
        # order in which agents' sends committed.
        locked_chat = Chat.objects.select_for_update(no_key=True).get(pk=chat.pk)
        message = Message(
            chat=locked_chat,
            channel=channel,
            client_message_id=client_message_id,
            direction=Message.Direction.OUTBOUND,
            type=type,
            text=text if type in (Message.Type.TEXT, Message.Type.TEMPLATE) else caption,
            status=Message.Status.PENDING,
            sender=sender if getattr(sender, "is_authenticated", False) else None,
            reply_to=reply_to,
            reply_to_wa_id=(reply_to.wa_message_id or "") if reply_to is not None else "",
            media_url=media_url[:2000],
            media_filename=filename,
            media_mime_type=mime_type[:128],
            payload={"send_fingerprint": fingerprint, **({"template": template} if template else {})},
            sort_at=now,
        )
        try:
            # A savepoint: two concurrent sends with the same client_message_id race to this insert.
            with transaction.atomic():
                if media_file is not None:
                    message.media_file.save(filename or "upload", File(media_file), save=False)
                    message.media_status = Message.MediaStatus.STORED
                    message.media_size = message.media_file.size
                message.save()
        except IntegrityError:
            existing = Message.objects.filter(channel=channel, client_message_id=client_message_id).first()
            if existing is None:
                raise
            return _same_or_conflict(existing, fingerprint)
        MessageEvent.objects.create(
            message=message,
            kind=MessageEvent.Kind.QUEUED,
            detail={"by": _user_label(sender)},
            occurred_at=now,
        )
        outbox_enqueue(
            channel=channel,
            chat=locked_chat,
            message=message,
            message_type=OUTBOX_MESSAGE_TYPE,
            payload={
                "to": locked_chat.wa_chat_id,
                "type": type,
                "text": text,
                "media_url": media_url,
                "filename": filename,
                "mime_type": mime_type,
                "caption": caption,
                "template": template or None,
                "reply_to_wa_id": message.reply_to_wa_id,
                "client_message_id": client_message_id,
            },
            now=now,
        )
        label = PREVIEW_LABELS.get(type, "")  # type: ignore[call-overload]
        preview = (text or caption or label or (template or {}).get("name", ""))[:255]
        locked_chat.last_message_preview = preview
        locked_chat.last_message_at = now
        locked_chat.save(update_fields=["last_message_preview", "last_message_at", "updated_at"])
        push_message_created(message, locked_chat)
    return message


def _same_or_conflict(existing: Message, fingerprint: str) -> Message:
    if (existing.payload or {}).get("send_fingerprint") == fingerprint:
        return existing
    raise ClientMessageIdConflict(
        "this client_message_id was already used for a different message; use a new id for a new message"
    )


def _user_label(user: Any) -> str:
    return str(getattr(user, "pk", "") or "") if user is not None else ""


def message_retry(*, message: Message, acting_user: Any) -> Message:
    """The retry button of a failed outbound message: the same message goes again, from attempt one.

    Another workspace's message is a 404 (``access_message``). Only ``failed`` outbound messages can be
    retried; a Meta chat whose window has closed refuses free text again (WindowClosedError).
    """
    message = access_message(user=acting_user, message_id=message.pk)
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        locked = (
            Message.objects.select_for_update(no_key=True).select_related("chat__channel").get(pk=message.pk)
        )
        if locked.direction != Message.Direction.OUTBOUND or locked.status != Message.Status.FAILED:
            raise InboxError("only a message that failed to send can be retried")
        chat = locked.chat
        if chat.channel.status == Channel.Status.DISCONNECTED:
            raise ChannelUnavailableError(
                f"{chat.channel.display_name} is disconnected: an admin must reconnect it first"
            )
        if (
            chat.channel.provider == Channel.Provider.META
            and locked.type != Message.Type.TEMPLATE
            and not _window_open(chat, now)
        ):
            raise WindowClosedError(
                "The 24-hour customer-service window for this chat is closed: only an approved template can be sent."
            )
        row = OutboxMessage.objects.filter(message=locked).first()
        try:
            if row is None:
                raise InboxError("this message has no outbox entry to retry")
            outbox_requeue_for_retry(row=row, now=now)
        except OutboxError as exc:
            raise InboxError(str(exc)) from None
        # A message that failed after the provider accepted it gets a new provider id on the new attempt.
        locked.status = Message.Status.PENDING
        locked.error_code = ""
        locked.error_message = ""
        locked.failed_at = None
        locked.wa_message_id = None
        locked.sent_at = None
        locked.save(
            update_fields=[
                "status",
                "error_code",
                "error_message",
                "failed_at",
                "wa_message_id",
                "sent_at",
                "updated_at",
            ]
        )
        MessageEvent.objects.create(
            message=locked,
            kind=MessageEvent.Kind.RETRY,
            detail={"manual": True, "by": _user_label(acting_user)},
            occurred_at=now,
        )
        audit_record(
            action="message.retried",
            workspace=chat.channel.workspace,
            actor=acting_user,
            target=locked,
            data={"chat_id": chat.pk},
        )
        push_message_updated(locked)
    return locked
