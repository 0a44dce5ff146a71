"""Meta WhatsApp Cloud API webhooks → normalized inbound events.

The envelope is ``{"object": "whatsapp_business_account", "entry": [{"changes": [{"field", "value"}]}]}``;
``value.metadata.phone_number_id`` names our business number, so one body can carry several numbers'
events (one app serving many numbers). All timestamps are strings of unix seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from channels_app.providers.base import (
    InboundEvent,
    InboundMessage,
    MediaInfo,
    ProviderNotice,
    Reaction,
    StatusUpdate,
    UnknownEvent,
    WebhookParseError,
)

MEDIA_TYPES = {"image", "video", "audio", "document", "sticker"}
STATUS_MAP = {"sent": "sent", "delivered": "delivered", "read": "read", "failed": "failed", "played": "read"}


def _timestamp(value: Any, fallback: datetime | None = None) -> datetime:
    try:
        return datetime.fromtimestamp(int(float(value)), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return fallback or datetime.now(tz=UTC)


def _obj(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one (provider payloads omit or null things)."""
    return value if isinstance(value, dict) else {}


def _changes(body: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    if not isinstance(body, dict) or not isinstance(body.get("entry"), list):
        raise WebhookParseError("not a Meta webhook: no entry[] array")
    for entry in body["entry"]:
        if not isinstance(entry, dict):
            continue
        for change in entry.get("changes") or []:
            if isinstance(change, dict) and isinstance(change.get("value"), dict):
                yield str(change.get("field") or ""), change["value"]


def _phone_number_id(value: dict[str, Any]) -> str:
    metadata = value.get("metadata")
    return str(metadata.get("phone_number_id") or "") if isinstance(metadata, dict) else ""


def meta_phone_number_ids(body: Any) -> list[str]:
    """The business numbers a body speaks for, in order of appearance (for routing one app to many channels)."""
    seen: list[str] = []
    for _field, value in _changes(body):
        pid = _phone_number_id(value)
        if pid and pid not in seen:
            seen.append(pid)
    return seen


def meta_event_type(body: Any) -> str:
    """A short label for the admin list: ``messages``, ``statuses``, ``errors`` or the change field."""
    kinds: list[str] = []
    try:
        for field, value in _changes(body):
            labels = [key for key in ("messages", "statuses", "errors", "message_echoes") if value.get(key)]
            for label in labels or [field or "unknown"]:
                if label not in kinds:
                    kinds.append(label)
    except WebhookParseError:
        return "invalid"
    return "+".join(kinds)[:64]


def parse_webhook(
    body: Any, *, phone_number_id: str | None = None, received_at: datetime | None = None
) -> list[InboundEvent]:
    """Every event in the body, in body order; only ``phone_number_id``'s changes when it is given
    (plus account-level changes, which name no number)."""
    events: list[InboundEvent] = []
    for field, value in _changes(body):
        pid = _phone_number_id(value)
        # Account-level changes (account_update, templates…) carry no number: every channel sees them.
        if phone_number_id is not None and pid and pid != phone_number_id:
            continue
        if field == "messages":
            events.extend(_parse_messages_value(value, received_at))
        elif field == "smb_message_echoes":
            # Coexistence numbers echo what the WhatsApp Business app on the phone sent.
            for item in value.get("message_echoes") or []:
                if isinstance(item, dict):
                    events.append(_parse_message(item, value, received_at, echo=True))
        else:
            events.append(UnknownEvent(kind=f"meta.{field or 'unknown'}"))
    return events


def _parse_messages_value(value: dict[str, Any], received_at: datetime | None) -> list[InboundEvent]:
    events: list[InboundEvent] = []
    for item in value.get("messages") or []:
        if isinstance(item, dict):
            events.append(_parse_message(item, value, received_at, echo=False))
    for item in value.get("statuses") or []:
        if isinstance(item, dict):
            events.append(_parse_status(item, received_at))
    for error in value.get("errors") or []:
        if isinstance(error, dict):
            code = str(error.get("code") or "")
            message = str(error.get("message") or error.get("title") or "")
            details = (
                (error.get("error_data") or {}).get("details")
                if isinstance(error.get("error_data"), dict)
                else ""
            )
            text = f"{message}: {details}" if details else message
            events.append(ProviderNotice(code=code, message=text))
    if not events and not value.get("contacts"):
        events.append(UnknownEvent(kind="meta.messages.empty"))
    return events


def _contact_name(value: dict[str, Any], wa_id: str) -> str:
    for contact in value.get("contacts") or []:
        if isinstance(contact, dict) and str(contact.get("wa_id") or "") == wa_id:
            profile = contact.get("profile")
            if isinstance(profile, dict):
                return str(profile.get("name") or "")
    return ""


def _media(content: dict[str, Any]) -> MediaInfo:
    size = content.get("file_size")
    return MediaInfo(
        media_id=str(content.get("id") or ""),
        url=str(content.get("url") or ""),
        mime_type=str(content.get("mime_type") or ""),
        sha256=str(content.get("sha256") or ""),
        size=int(size) if isinstance(size, int | str) and str(size).isdigit() else None,
        filename=str(content.get("filename") or ""),
        caption=str(content.get("caption") or ""),
    )


def _parse_message(
    item: dict[str, Any], value: dict[str, Any], received_at: datetime | None, *, echo: bool
) -> InboundEvent:
    msg_type = str(item.get("type") or "unknown")
    wa_message_id = str(item.get("id") or "")
    sender = str(item.get("from") or "")
    # An echo is from our number to the customer: the chat is the recipient.
    wa_chat_id = str(item.get("to") or "") if echo else sender
    timestamp = _timestamp(item.get("timestamp"), received_at)
    context = _obj(item.get("context"))

    if msg_type == "reaction":
        reaction = _obj(item.get("reaction"))
        # Removal arrives without "emoji" (Meta's docs) or with "" (seen in the wild): both mean removed.
        return Reaction(
            target_wa_message_id=str(reaction.get("message_id") or ""),
            emoji=str(reaction.get("emoji") or ""),
            reactor_wa_id="me" if echo else sender,
            timestamp=timestamp,
            wa_chat_id=wa_chat_id,
            wa_message_id=wa_message_id,
        )

    text = ""
    media: MediaInfo | None = None
    payload: dict[str, Any] = {}
    normalized_type = msg_type
    content = _obj(item.get(msg_type))

    if msg_type == "text":
        text = str(content.get("body") or "")
    elif msg_type in MEDIA_TYPES:
        media = _media(content)
        text = media.caption
        if msg_type == "audio" and content.get("voice"):
            normalized_type = "voice"
        if msg_type == "sticker" and content.get("animated") is not None:
            payload["animated"] = bool(content.get("animated"))
    elif msg_type == "location":
        payload = {
            k: content.get(k) for k in ("latitude", "longitude", "name", "address", "url") if k in content
        }
        text = " · ".join(str(content[k]) for k in ("name", "address") if content.get(k))
    elif msg_type == "contacts":
        raw_contacts = item.get("contacts")
        contacts: list[Any] = raw_contacts if isinstance(raw_contacts, list) else []
        payload = {"contacts": contacts}
        names = [
            str((c.get("name") or {}).get("formatted_name") or "")
            for c in contacts
            if isinstance(c, dict) and isinstance(c.get("name"), dict)
        ]
        text = ", ".join(n for n in names if n)
    elif msg_type == "interactive":
        reply_type = str(content.get("type") or "")
        reply = _obj(content.get(reply_type))
        payload = {"reply_type": reply_type, "id": reply.get("id"), "title": reply.get("title")}
        if reply.get("description"):
            payload["description"] = reply.get("description")
        if reply_type == "nfm_reply":
            payload["response_json"] = reply.get("response_json")
        text = str(reply.get("title") or reply.get("body") or "")
    elif msg_type == "button":
        payload = {"payload": content.get("payload")}
        text = str(content.get("text") or "")
    elif msg_type == "system":
        text = str(content.get("body") or "")
        payload = {k: v for k, v in content.items() if k != "body"}
    else:
        # "unsupported", "order", "request_welcome", anything newer: keep what came, show a placeholder.
        normalized_type = "unsupported"
        payload = {"original_type": msg_type}
        if content:
            payload["content"] = content
        if item.get("errors"):
            payload["errors"] = item.get("errors")

    if context.get("referred_product"):
        payload["referred_product"] = context.get("referred_product")
    if item.get("referral"):
        payload["referral"] = item.get("referral")

    return InboundMessage(
        wa_message_id=wa_message_id,
        wa_chat_id=wa_chat_id,
        from_me=echo,
        type=normalized_type,
        timestamp=timestamp,
        text=text,
        contact_name="" if echo else _contact_name(value, sender),
        contact_phone=wa_chat_id,
        reply_to_wa_id=str(context.get("id") or ""),
        media=media,
        payload=payload,
    )


def _parse_status(item: dict[str, Any], received_at: datetime | None) -> InboundEvent:
    raw_status = str(item.get("status") or "")
    status = STATUS_MAP.get(raw_status)
    if status is None:
        return UnknownEvent(kind=f"meta.status.{raw_status or 'missing'}", detail=str(item.get("id") or ""))
    error_code = error_message = ""
    errors = item.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        error_code = str(first.get("code") or "")
        details = (
            first.get("error_data", {}).get("details") if isinstance(first.get("error_data"), dict) else ""
        )
        error_message = str(first.get("message") or first.get("title") or "")
        if details and details != error_message:
            error_message = f"{error_message}: {details}" if error_message else str(details)
    return StatusUpdate(
        wa_message_id=str(item.get("id") or ""),
        status=status,
        timestamp=_timestamp(item.get("timestamp"), received_at),
        wa_chat_id=str(item.get("recipient_id") or ""),
        error_code=error_code,
        error_message=error_message,
    )
