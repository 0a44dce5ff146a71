"""The normalized language every provider speaks. Nothing here knows a provider's JSON or our models.

Inbound: a provider parses its webhook body into a list of ``InboundEvent`` values.
Outbound: a provider's ``Transport`` sends an ``OutgoingMessage`` and returns a ``SendResult`` or
raises ``TransportError`` saying what kind of failure it was.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

# ---------------------------------------------------------------- inbound


@dataclass(frozen=True)
class MediaInfo:
    media_id: str = ""
    url: str = ""
    mime_type: str = ""
    sha256: str = ""
    size: int | None = None
    filename: str = ""
    caption: str = ""


@dataclass(frozen=True)
class InboundMessage:
    """A message in a chat: from the customer, or an echo of one we (or the phone) sent."""

    wa_message_id: str
    wa_chat_id: str
    from_me: bool
    type: str  # one of inbox Message.Type values
    timestamp: datetime
    text: str = ""
    contact_name: str = ""
    contact_phone: str = ""
    is_group: bool = False
    author_wa_id: str = ""
    author_name: str = ""
    reply_to_wa_id: str = ""
    media: MediaInfo | None = None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StatusUpdate:
    wa_message_id: str
    status: str  # sent | delivered | read | failed
    timestamp: datetime
    wa_chat_id: str = ""
    error_code: str = ""
    error_message: str = ""


@dataclass(frozen=True)
class MessageEdit:
    wa_message_id: str
    text: str
    timestamp: datetime
    wa_chat_id: str = ""


@dataclass(frozen=True)
class MessageRevoke:
    wa_message_id: str
    timestamp: datetime
    wa_chat_id: str = ""


@dataclass(frozen=True)
class Reaction:
    target_wa_message_id: str
    emoji: str  # empty: the reaction was removed
    reactor_wa_id: str
    timestamp: datetime
    wa_chat_id: str = ""
    wa_message_id: str = ""


@dataclass(frozen=True)
class ChatUpdate:
    wa_chat_id: str
    action: str  # post | patch | delete
    name: str = ""
    is_group: bool = False
    unread_count: int | None = None
    timestamp: datetime | None = None


@dataclass(frozen=True)
class ChannelStatusUpdate:
    status: str  # channels_app Channel.Status value
    detail: str = ""


@dataclass(frozen=True)
class ProviderNotice:
    """An error or notice the provider reports about the number (Meta ``value.errors``)."""

    code: str
    message: str


@dataclass(frozen=True)
class UnknownEvent:
    kind: str
    detail: str = ""


InboundEvent = (
    InboundMessage
    | StatusUpdate
    | MessageEdit
    | MessageRevoke
    | Reaction
    | ChatUpdate
    | ChannelStatusUpdate
    | ProviderNotice
    | UnknownEvent
)


class WebhookParseError(Exception):
    """The body is not something this provider sends."""


# ---------------------------------------------------------------- outbound


@dataclass(frozen=True)
class OutgoingMessage:
    to: str  # the chat's WhatsApp id
    type: str  # text | image | video | audio | document | template
    text: str = ""
    media_url: str = ""
    media_filename: str = ""
    media_mime_type: str = ""
    media_bytes: bytes | None = None
    caption: str = ""
    template_name: str = ""
    template_language: str = ""
    template_components: list[dict[str, Any]] = field(default_factory=list)
    reply_to_wa_id: str = ""
    client_message_id: str = ""


@dataclass(frozen=True)
class SendResult:
    wa_message_id: str
    raw: dict[str, Any] = field(default_factory=dict)


class FailureKind(enum.StrEnum):
    TRANSIENT = "transient"  # retry with backoff
    RATE_LIMITED = "rate_limited"  # pause the channel until retry_after
    PAIR_LIMITED = "pair_limited"  # retry this one message later, the channel keeps going
    PERMANENT = "permanent"  # fail the message now


class TransportError(Exception):
    def __init__(
        self,
        message: str,
        *,
        kind: FailureKind,
        code: str = "",
        retry_after: float | None = None,
        disconnect: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.code = code
        self.retry_after = retry_after
        self.disconnect = disconnect  # the token is invalid: mark the channel disconnected

    @property
    def permanent(self) -> bool:
        return self.kind == FailureKind.PERMANENT


class Transport(Protocol):
    def send(self, message: OutgoingMessage) -> SendResult: ...
