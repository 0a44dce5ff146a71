"""The sandbox number: no credentials, no network. A send is accepted at once; the message is then
"delivered" and "read" a moment later as ordinary StatusUpdate events fed to the normal inbound path.

The transport does not apply the events itself (providers never touch the inbox): it hands them to the
``schedule_events`` callback it was built with, which the outbox wires to a delayed task.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from channels_app.providers.base import FailureKind, OutgoingMessage, SendResult, StatusUpdate, TransportError

# (events, delay in seconds) → None
EventScheduler = Callable[[list[StatusUpdate], float], None]

DELIVERED_AFTER = 1.0
READ_AFTER = 2.0


class SandboxTransport:
    def __init__(
        self,
        *,
        schedule_events: EventScheduler | None = None,
        delivered_after: float = DELIVERED_AFTER,
        read_after: float = READ_AFTER,
    ) -> None:
        self.schedule_events = schedule_events
        self.delivered_after = delivered_after
        self.read_after = read_after

    def send(self, message: OutgoingMessage) -> SendResult:
        if message.type in {"image", "video", "audio", "document"} and not (
            message.media_url or message.media_bytes is not None
        ):
            raise TransportError(
                "a media message needs a URL or a file", kind=FailureKind.PERMANENT, code="no_media"
            )
        wa_message_id = f"sandbox.{uuid.uuid4().hex}"
        if self.schedule_events is not None:
            now = datetime.now(UTC)
            for status, delay in (("delivered", self.delivered_after), ("read", self.read_after)):
                event = StatusUpdate(
                    wa_message_id=wa_message_id,
                    status=status,
                    timestamp=now + timedelta(seconds=delay),
                    wa_chat_id=message.to,
                )
                self.schedule_events([event], delay)
        return SendResult(wa_message_id=wa_message_id, raw={"sandbox": True})
