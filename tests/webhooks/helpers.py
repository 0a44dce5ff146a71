"""Store a fixture as a raw event and process it, the way the endpoint and the task do."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from channels_app.models import Channel
from tests.webhooks.samples import fixture_bytes
from webhooks.models import WebhookEvent
from webhooks.processor import ProcessOutcome, webhook_event_process
from webhooks.services import webhook_event_store


def store(channel: Channel, body: bytes, *, provider: str | None = None) -> WebhookEvent:
    with transaction.atomic():
        (event,) = webhook_event_store(
            provider=provider or channel.provider,
            channels=[channel],
            raw_body=body,
            headers={"Content-Type": "application/json"},
            signature_valid=True,
            event_type="test",
        )
    return event


def deliver(channel: Channel, body: bytes | str, **kwargs: Any) -> ProcessOutcome:
    raw = body.encode() if isinstance(body, str) else body
    event = store(channel, raw, **kwargs)
    return webhook_event_process(event_id=event.pk)


def deliver_fixture(channel: Channel, name: str) -> ProcessOutcome:
    provider = "meta" if channel.provider == Channel.Provider.META else "whapi"
    outcome = deliver(channel, fixture_bytes(provider, name))
    assert outcome.status == "processed", outcome
    return outcome
