"""Whapi.Cloud webhooks → normalized inbound events.

Every body is ``{<payload key>: ..., "event": {"type": <category>, "event": <post|put|patch|delete>},
"channel_id": ...}``. The published samples name the second key ``event``; Whapi's OpenAPI names it
``method``: both are read. ``messages[].timestamp`` is a number, ``statuses[].timestamp`` a string.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from channels_app.providers.base import (
    ChannelStatusUpdate,
    ChatUpdate,
    InboundEvent,
    InboundMessage,
    MediaInfo,
    MessageEdit,
    MessageRevoke,
    Reaction,
    StatusUpdate,
    UnknownEvent,
    WebhookParseError,
)

# Deprecated category names Whapi still accepts in subscriptions.
CATEGORY_ALIASES = {"message": "messages", "ack": "statuses", "chat": "chats", "status": "channel"}

MEDIA_TYPES = {
    "image": "image",
    "video": "video",
    "gif": "video",
    "short": "video",
    "audio": "audio",
    "voice": "voice",
    "document": "document",
    "sticker": "sticker",
}
STATUS_MAP = {"sent": "sent", "delivered": "delivered", "read": "read", "played": "read", "failed": "failed"}

# Channel health texts → our Channel.Status. AUTH is the only working state; QR/STOP mean the phone
# session is gone (someone must scan again or renew); INIT/LAUNCH are a restart in progress.
HEALTH_STATUS_MAP = {
    "AUTH": "connected",
    "SYNC_ERROR": "degraded",
    "INIT": "pending",
    "LAUNCH": "pending",
    "NOT_INIT": "pending",
    "QR": "disconnected",
    "STOP": "disconnected",
    "ERROR": "disconnected",
}


def _timestamp(value: Any, fallback: datetime | None = None) -> datetime:
    try:
        return datetime.fromtimestamp(int(float(value)), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return fallback or datetime.now(tz=UTC)


def _obj(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one (provider payloads omit or null things)."""
    return value if isinstance(value, dict) else {}


def whapi_event_name(body: Any) -> tuple[str, str]:
    """(category, action), e.g. ("messages", "post"); action falls back from ``event.event`` to ``event.method``."""
    if not isinstance(body, dict):
        raise WebhookParseError("not a Whapi webhook: the body is not a JSON object")
    event = body.get("event")
    if not isinstance(event, dict):
        return _guess_event(body)
    category = str(event.get("type") or "").lower()
    action = str(event.get("event") or event.get("method") or "").lower()
    category = CATEGORY_ALIASES.get(category, category)
    if not category:
        return _guess_event(body)
    return category, action or "post"


def _guess_event(body: dict[str, Any]) -> tuple[str, str]:
    # Tolerate bodies without "event" (older channels, hand-made tests): the payload key says what it is.
    for key, name in (
        ("messages", ("messages", "post")),
        ("messages_updates", ("messages", "patch")),
        ("messages_removed", ("messages", "delete")),
        ("statuses", ("statuses", "post")),
        ("chats", ("chats", "post")),
        ("chats_updates", ("chats", "patch")),
        ("chats_removed", ("chats", "delete")),
        ("health", ("channel", "post")),
        ("user", ("users", "post")),
    ):
        if key in body:
            return name
    return "unknown", ""


def whapi_event_type(body: Any) -> str:
    try:
        category, action = whapi_event_name(body)
    except WebhookParseError:
        return "invalid"
    return f"{category}.{action}"[:64]


def whapi_body_channel_id(body: Any) -> str:
    return str(body.get("channel_id") or "") if isinstance(body, dict) else ""


def parse_webhook(body: Any, *, received_at: datetime | None = None) -> list[InboundEvent]:
    category, action = whapi_event_name(body)
    events: list[InboundEvent] = []
    if category == "messages" and action in ("post", "put"):
        for item in _items(body, "messages"):
            events.append(_parse_message(item, received_at))
    elif category == "messages" and action == "patch":
        for item in _items(body, "messages_updates"):
            events.extend(_parse_message_update(item, received_at))
    elif category == "messages" and action == "delete":
        for item in body.get("messages_removed") or []:
            wa_id = item.get("id") if isinstance(item, dict) else item
            if wa_id:
                events.append(
                    MessageRevoke(wa_message_id=str(wa_id), timestamp=received_at or _timestamp(None))
                )
        if body.get("messages_removed_all"):
            # "Clear chat" on the phone: the inbox keeps its history for audit.
            events.append(
                UnknownEvent(kind="whapi.messages.removed_all", detail=str(body["messages_removed_all"]))
            )
    elif category == "statuses":
        for item in _items(body, "statuses"):
            events.append(_parse_status(item, received_at))
    elif category == "chats":
        events.extend(_parse_chats(body, action, received_at))
    elif category == "channel":
        events.append(_parse_health(body))
    elif category == "users":
        user = _obj(body.get("user"))
        who = str(user.get("name") or user.get("id") or "")
        if action == "delete":
            events.append(
                ChannelStatusUpdate(
                    status="disconnected", detail=f"Logged out ({who})" if who else "Logged out"
                )
            )
        else:
            events.append(
                ChannelStatusUpdate(status="connected", detail=f"Logged in as {who}" if who else "")
            )
    if not events:
        events.append(UnknownEvent(kind=f"whapi.{category}.{action}"))
    return events


def _items(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = body.get(key)
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _is_group(chat_id: str) -> bool:
    return chat_id.endswith("@g.us")


def _phone(chat_id: str) -> str:
    return chat_id.split("@")[0] if chat_id.endswith("@s.whatsapp.net") else ""


def _media(content: dict[str, Any]) -> MediaInfo:
    size = content.get("file_size")
    return MediaInfo(
        media_id=str(content.get("id") or ""),
        url=str(content.get("link") or ""),
        mime_type=str(content.get("mime_type") or ""),
        sha256=str(content.get("sha256") or ""),
        size=int(size) if isinstance(size, int) else None,
        filename=str(content.get("file_name") or content.get("filename") or ""),
        caption=str(content.get("caption") or ""),
    )


def _content_text(content: Any) -> str:
    if not isinstance(content, dict):
        return ""
    return str(content.get("body") or content.get("caption") or "")


def _parse_message(item: dict[str, Any], received_at: datetime | None) -> InboundEvent:
    msg_type = str(item.get("type") or "unknown")
    wa_message_id = str(item.get("id") or "")
    chat_id = str(item.get("chat_id") or "")
    from_me = bool(item.get("from_me"))
    sender = str(item.get("from") or "")
    timestamp = _timestamp(item.get("timestamp"), received_at)
    content = _obj(item.get(msg_type))

    if msg_type == "action":
        return _parse_action(item, received_at)

    is_group = _is_group(chat_id)
    text = ""
    media: MediaInfo | None = None
    payload: dict[str, Any] = {}
    normalized_type = msg_type
    if msg_type == "text":
        text = str(content.get("body") or "")
    elif msg_type == "link_preview":
        normalized_type = "text"
        text = str(content.get("body") or "")
        payload = {"url": content.get("url"), "title": content.get("title")}
    elif msg_type in MEDIA_TYPES:
        normalized_type = MEDIA_TYPES[msg_type]
        media = _media(content)
        text = media.caption
    elif msg_type in ("location", "live_location"):
        normalized_type = "location"
        payload = {
            k: content.get(k) for k in ("latitude", "longitude", "name", "address", "url") if k in content
        }
        text = " · ".join(str(content[k]) for k in ("name", "address") if content.get(k))
    elif msg_type in ("contact", "contact_list"):
        normalized_type = "contacts"
        cards = content.get("list") if msg_type == "contact_list" else [content]
        payload = {"contacts": cards or []}
        text = ", ".join(
            str(c.get("name") or "") for c in cards or [] if isinstance(c, dict) and c.get("name")
        )
    elif msg_type == "reply":
        normalized_type = "interactive"
        reply_type = str(content.get("type") or "")
        reply = _obj(content.get(reply_type))
        payload = {"reply_type": reply_type, "id": reply.get("id"), "title": reply.get("title")}
        text = str(reply.get("title") or "")
    elif msg_type == "interactive":
        normalized_type = "interactive"
        text = _content_text(content.get("body")) or str(content.get("body") or "")
        payload = {"interactive": content}
    elif msg_type == "hsm":
        normalized_type = "template"
        text = str(content.get("body") or "")
        payload = {"hsm": content}
    elif msg_type == "system":
        text = _content_text(content)
    else:
        normalized_type = "unsupported"
        payload = {"original_type": msg_type}
        if content:
            payload["content"] = content

    context = _obj(item.get("context"))
    if context.get("forwarded"):
        payload["forwarded"] = True

    # In a 1:1 chat the other side's name is the contact; in a group the sender is only the author.
    if is_group or from_me:
        contact_name = str(item.get("chat_name") or "")
    else:
        contact_name = str(item.get("chat_name") or item.get("from_name") or "")

    return InboundMessage(
        wa_message_id=wa_message_id,
        wa_chat_id=chat_id,
        from_me=from_me,
        type=normalized_type,
        timestamp=timestamp,
        text=text,
        contact_name=contact_name,
        contact_phone=_phone(chat_id),
        is_group=is_group,
        author_wa_id=sender if is_group and not from_me else "",
        author_name=str(item.get("from_name") or "") if is_group and not from_me else "",
        reply_to_wa_id=str(context.get("quoted_id") or ""),
        media=media,
        payload=payload,
    )


def _parse_action(item: dict[str, Any], received_at: datetime | None) -> InboundEvent:
    action = _obj(item.get("action"))
    kind = str(action.get("type") or "")
    target = str(action.get("target") or "")
    chat_id = str(item.get("chat_id") or "")
    timestamp = _timestamp(item.get("timestamp"), received_at)
    if kind == "reaction":
        return Reaction(
            target_wa_message_id=target,
            emoji=str(action.get("emoji") or ""),
            reactor_wa_id="me" if item.get("from_me") else str(item.get("from") or ""),
            timestamp=timestamp,
            wa_chat_id=chat_id,
            wa_message_id=str(item.get("id") or ""),
        )
    if kind in ("edit", "edited"):
        return MessageEdit(
            wa_message_id=target,
            text=_content_text(action.get("edited_content")),
            timestamp=timestamp,
            wa_chat_id=chat_id,
        )
    if kind == "delete":
        return MessageRevoke(wa_message_id=target, timestamp=timestamp, wa_chat_id=chat_id)
    return UnknownEvent(kind=f"whapi.action.{kind or 'missing'}", detail=str(item.get("id") or ""))


def _parse_message_update(item: dict[str, Any], received_at: datetime | None) -> list[InboundEvent]:
    after = _obj(item.get("after_update"))
    trigger = _obj(item.get("trigger"))
    wa_message_id = str(item.get("id") or after.get("id") or "")
    changes = item.get("changes") if isinstance(item.get("changes"), list) else []
    chat_id = str(after.get("chat_id") or trigger.get("chat_id") or "")
    # The edit happened when the trigger (the edit action message) was sent, not when the original was.
    timestamp = _timestamp(trigger.get("timestamp"), received_at)
    after_type = str(after.get("type") or "text")
    text = _content_text(after.get(after_type))
    if not wa_message_id:
        return [UnknownEvent(kind="whapi.messages.patch", detail="no id")]
    if changes and not any(c in ("text", "caption", "body", "content") for c in changes) and not text:
        return [UnknownEvent(kind="whapi.messages.patch", detail=",".join(map(str, changes)))]
    return [MessageEdit(wa_message_id=wa_message_id, text=text, timestamp=timestamp, wa_chat_id=chat_id)]


def _parse_status(item: dict[str, Any], received_at: datetime | None) -> InboundEvent:
    raw = str(item.get("status") or "")
    timestamp = _timestamp(item.get("timestamp"), received_at)
    wa_message_id = str(item.get("id") or "")
    chat_id = str(item.get("recipient_id") or "")
    if raw == "deleted":
        return MessageRevoke(wa_message_id=wa_message_id, timestamp=timestamp, wa_chat_id=chat_id)
    status = STATUS_MAP.get(raw)
    if status is None:
        # "pending" is our own starting point: nothing to record.
        return UnknownEvent(kind=f"whapi.status.{raw or 'missing'}", detail=wa_message_id)
    error_code = error_message = ""
    errors = item.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        error_code = str(errors[0].get("code") or "")
        error_message = str(errors[0].get("message") or "")
        if errors[0].get("details"):
            error_message = (
                f"{error_message}: {errors[0]['details']}" if error_message else str(errors[0]["details"])
            )
    return StatusUpdate(
        wa_message_id=wa_message_id,
        status=status,
        timestamp=timestamp,
        wa_chat_id=chat_id,
        error_code=error_code,
        error_message=error_message,
    )


def _parse_chats(body: dict[str, Any], action: str, received_at: datetime | None) -> list[InboundEvent]:
    events: list[InboundEvent] = []
    if action == "delete":
        for item in body.get("chats_removed") or []:
            chat_id = item.get("id") if isinstance(item, dict) else item
            if chat_id:
                events.append(ChatUpdate(wa_chat_id=str(chat_id), action="delete", timestamp=received_at))
        return events
    if action == "patch":
        for item in _items(body, "chats_updates"):
            after = _obj(item.get("after_update"))
            if after.get("id"):
                events.append(_chat_update(after, "patch"))
        return events
    for item in _items(body, "chats"):
        if item.get("id"):
            events.append(_chat_update(item, "post"))
    return events


def _chat_update(chat: dict[str, Any], action: str) -> ChatUpdate:
    chat_id = str(chat["id"])
    unread = chat.get("unread")
    return ChatUpdate(
        wa_chat_id=chat_id,
        action=action,
        name=str(chat.get("name") or ""),
        is_group=chat.get("type") == "group" or _is_group(chat_id),
        unread_count=unread if isinstance(unread, int) else None,
        timestamp=_timestamp(chat["timestamp"]) if chat.get("timestamp") else None,
    )


def _parse_health(body: dict[str, Any]) -> InboundEvent:
    health = _obj(body.get("health"))
    status = _obj(health.get("status"))
    text = str(status.get("text") or "").upper()
    if not text and body.get("qr"):
        text = "QR"
    mapped = HEALTH_STATUS_MAP.get(text)
    if mapped is None:
        return UnknownEvent(kind=f"whapi.health.{text or 'missing'}")
    detail = {
        "QR": "Scan the QR code in Whapi to reconnect the phone",
        "STOP": "The Whapi channel is stopped",
        "ERROR": "The Whapi channel reports an error",
        "SYNC_ERROR": "Whapi cannot sync with the phone",
        "INIT": "The Whapi channel is starting",
        "LAUNCH": "The Whapi channel is starting",
    }.get(text, "")
    return ChannelStatusUpdate(status=mapped, detail=detail)
