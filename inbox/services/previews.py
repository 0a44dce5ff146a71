"""The chat list's line for a chat's last message, received or sent."""

from __future__ import annotations

from inbox.models import Message

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


def _preview(message: Message) -> str:
    if message.deleted_at is not None:
        return DELETED_PREVIEW
    label = PREVIEW_LABELS.get(message.type, "")  # type: ignore[call-overload]
    text = message.text.strip()
    if label and text:
        return f"{label}: {text}"[:255]
    return (text or label)[:255]
