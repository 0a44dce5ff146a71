"""What one ``inbound_events_apply`` call carries through the receive modules: its context and its result."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from channels_app.models import Channel
from channels_app.providers.base import ProviderNotice


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
