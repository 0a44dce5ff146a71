"""The drain's batch of "sent" pushes looks up a workspace's event subscriptions once, and still queues
exactly one ``message.status`` delivery per sent message for a workspace that subscribed."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from outbox.models import OutboxMessage
from outbox.services import outbox_claim_batch, outbox_drain
from outbox.subscriptions import EVENT_DELIVERY, subscription_create
from tests.factories import WorkspaceFactory
from tests.outbox.helpers import open_chat, provider_channel, send_text

pytestmark = pytest.mark.django_db


def _deliveries(event_type: str) -> list[OutboxMessage]:
    return [
        row
        for row in OutboxMessage.objects.filter(message_type=EVENT_DELIVERY)
        if row.payload["event_type"] == event_type
    ]


def test_a_subscribed_workspace_gets_one_status_delivery_per_message_sent_in_a_batch(fake_provider):
    workspace = WorkspaceFactory()
    subscription_create(workspace=workspace, url="http://127.0.0.1:9/hook", event_types=["message.status"])
    channel = provider_channel(fake_provider, workspace=workspace)
    messages = [send_text(open_chat(channel), f"hello {n}") for n in range(5)]

    rows = outbox_claim_batch(limit=50)
    from outbox.dispatch import BatchSender
    from outbox.services import DrainReport

    report = DrainReport()
    with CaptureQueriesContext(connection) as queries:
        BatchSender().send(rows, report)

    assert report.sent == 5
    deliveries = _deliveries("message.status")
    assert sorted(d.payload["data"]["message"]["id"] for d in deliveries) == sorted(m.pk for m in messages)
    # The event says what the recording wrote, not the message as it was claimed.
    assert all(d.payload["data"]["message"]["status"] == "sent" for d in deliveries)
    assert all(d.payload["data"]["message"]["wa_message_id"] for d in deliveries)
    # Every field the event carries was loaded with the claim: no query per message for one.
    assert not [q for q in queries.captured_queries if q["sql"].startswith('SELECT "inbox_message"')]


def test_an_unsubscribed_workspace_records_a_batch_with_one_subscription_lookup(fake_provider):
    channel = provider_channel(fake_provider)
    for n in range(6):
        send_text(open_chat(channel), f"hello {n}")
    rows = outbox_claim_batch(limit=50)
    from outbox.dispatch import BatchSender
    from outbox.services import DrainReport

    report = DrainReport()
    with CaptureQueriesContext(connection) as queries:
        BatchSender().send(rows, report)

    assert report.sent == 6
    lookups = [q for q in queries.captured_queries if "outbox_eventsubscription" in q["sql"]]
    chat_loads = [q for q in queries.captured_queries if q["sql"].startswith('SELECT "inbox_chat"')]
    channel_loads = [q for q in queries.captured_queries if 'FROM "channels_app_channel"' in q["sql"]]
    row_loads = [
        q
        for q in queries.captured_queries
        if q["sql"].startswith(('SELECT "inbox_message"', 'SELECT "outbox_outboxmessage"'))
    ]
    assert len(lookups) == 1
    assert chat_loads == []
    assert channel_loads == []  # each number's Channel came with the claim, for the rows and their messages
    assert row_loads == []  # nothing the claim left unloaded (claim.UNSENT_*_FIELDS) is read while sending
    assert not _deliveries("message.status")


@pytest.mark.django_db(transaction=True)
def test_a_batch_of_sends_is_pushed_to_the_workspace_once_with_every_message(fake_provider):
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from tenants.realtime import _push_loop, workspace_group
    from tests.layer import received_frames

    channel = provider_channel(fake_provider)
    messages = [send_text(open_chat(channel), f"hello {n}") for n in range(6)]
    layer = get_channel_layer()
    listener = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(workspace_group(channel.workspace_id), listener)

    report = outbox_drain(batch_size=50)
    _push_loop.flush()

    updates = [f for f in async_to_sync(received_frames)(layer, listener) if f["type"] == "messages.updated"]
    assert report.sent == 6
    assert len(updates) == 1
    assert sorted(tuple(item) for item in updates[0]["items"]) == sorted((m.chat_id, m.pk) for m in messages)
