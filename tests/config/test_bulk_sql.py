"""rows_insert stores exactly what the ORM stores, field for field, and hands back the ids in order."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.forms.models import model_to_dict

from config.bulk_sql import rows_insert
from inbox.models import Message
from tests.factories import ChatFactory
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db


def test_binary_bodies_json_headers_and_times_come_back_exactly_as_the_orm_stores_them(team):
    def event(body: bytes) -> WebhookEvent:
        return WebhookEvent(
            provider="whapi",
            channel=team.channel_a,
            headers={"content-type": "application/json", "x-nested": {"a": [1, "é", None]}},
            raw_body=body,
            signature_valid=True,
            event_type="messages.post",
            next_attempt_at=datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC),
            correlation_id="req-1",
        )

    bodies = [bytes(range(256)), b'{"text": "\\u0000 and \xc3\xa9"}', b""]
    ours = [event(body) for body in bodies]
    rows_insert(WebhookEvent, ours)
    orm = WebhookEvent.objects.bulk_create([event(body) for body in bodies])

    assert [e.pk for e in ours] == sorted(e.pk for e in ours)
    for mine, theirs in zip(ours, orm, strict=True):
        stored, expected = WebhookEvent.objects.get(pk=mine.pk), WebhookEvent.objects.get(pk=theirs.pk)
        assert bytes(stored.raw_body) == bytes(expected.raw_body)
        ignore = {"id", "received_at"}
        assert {k: v for k, v in model_to_dict(stored).items() if k not in ignore} == {
            k: v for k, v in model_to_dict(expected).items() if k not in ignore
        }


def test_messages_keep_their_order_and_every_column(team):
    chat = ChatFactory(channel=team.channel_a)
    at = datetime(2026, 3, 1, tzinfo=UTC)
    messages = [
        Message(
            chat=chat,
            channel=team.channel_a,
            wa_message_id=f"bulk.{n}",
            direction=Message.Direction.INBOUND,
            text=f"text {n}",
            status=Message.Status.RECEIVED,
            sort_at=at,
            provider_timestamp=at,
            payload={"n": n, "list": [n]},
        )
        for n in range(5)
    ]
    rows_insert(Message, messages)
    for message in messages:
        stored = Message.objects.get(pk=message.pk)
        assert (stored.wa_message_id, stored.text, stored.payload) == (
            message.wa_message_id,
            message.text,
            message.payload,
        )
        assert stored.created_at is not None and stored.media_file.name == ""
