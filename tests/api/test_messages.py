"""/api/v1/chats/{id}/messages/ and /api/v1/messages/{id}/: keyset reading, 202 sends, the timeline."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from channels_app.models import Channel
from inbox.models import Message, MessageEvent
from outbox.models import OutboxMessage
from tests.api.conftest import assert_error, data_of
from tests.factories import ChannelFactory, ChatFactory, MessageFactory

pytestmark = pytest.mark.django_db


def test_messages_page_newest_first_by_keyset(bob_api, team):
    base = timezone.now()
    older = [
        MessageFactory(chat=team.chat_a, sort_at=base - timedelta(minutes=10 - i), text=f"m{i}")
        for i in range(5)
    ]
    Message.objects.filter(pk=team.message_a.pk).update(sort_at=base)
    body = bob_api.get(f"/chats/{team.chat_a.pk}/messages/", {"limit": 4}).json()
    assert [m["text"] for m in body["data"]] == [team.message_a.text, "m4", "m3", "m2"]
    assert body["pagination"] == {"limit": 4, "hasMore": True, "nextBefore": older[2].pk}
    body = bob_api.get(f"/chats/{team.chat_a.pk}/messages/", {"limit": 4, "before": older[2].pk}).json()
    assert [m["text"] for m in body["data"]] == ["m1", "m0"]
    assert body["pagination"] == {"limit": 4, "hasMore": False, "nextBefore": None}


def test_reading_messages_validates_before_and_limit(bob_api, team):
    error = assert_error(
        bob_api.get(f"/chats/{team.chat_a.pk}/messages/", {"limit": 1000, "before": "x"}), 400
    )
    assert {"limit", "before"} <= set(error["fields"])
    # A message of another chat is no anchor here.
    other = MessageFactory(chat=ChatFactory(channel=team.channel_a))
    error = assert_error(bob_api.get(f"/chats/{team.chat_a.pk}/messages/", {"before": other.pk}), 400)
    assert "before" in error["fields"]


def test_charlie_gets_404_for_workspace_a_messages(charlie_api, team):
    assert_error(charlie_api.get(f"/chats/{team.chat_a.pk}/messages/"), 404)
    assert_error(
        charlie_api.post(f"/chats/{team.chat_a.pk}/messages/", {"text": "hi", "client_message_id": "c1"}), 404
    )
    assert_error(charlie_api.get(f"/messages/{team.message_a.pk}/"), 404)
    assert not Message.objects.filter(client_message_id="c1").exists()


def test_sending_answers_202_with_the_pending_message_and_queues_it(bob_api, team):
    message = data_of(
        bob_api.post(f"/chats/{team.chat_a.pk}/messages/", {"text": "Hello!", "client_message_id": "c-1"}),
        202,
    )
    assert message["status"] == "pending"
    assert message["direction"] == "out"
    assert message["sender"] == {"id": team.bob.pk, "email": "bob@example.com"}
    assert OutboxMessage.objects.filter(message_id=message["id"], status="queued").exists()


def test_repeating_a_send_with_the_same_id_and_body_returns_the_same_message(bob_api, team):
    body = {"text": "Hello!", "client_message_id": "c-2"}
    first = data_of(bob_api.post(f"/chats/{team.chat_a.pk}/messages/", body), 202)
    second = data_of(bob_api.post(f"/chats/{team.chat_a.pk}/messages/", body), 202)
    assert second["id"] == first["id"]
    assert Message.objects.filter(client_message_id="c-2").count() == 1
    assert OutboxMessage.objects.filter(message_id=first["id"]).count() == 1


def test_reusing_a_client_message_id_for_another_body_is_a_409(bob_api, team):
    data_of(
        bob_api.post(f"/chats/{team.chat_a.pk}/messages/", {"text": "Hello!", "client_message_id": "c-3"}),
        202,
    )
    error = assert_error(
        bob_api.post(f"/chats/{team.chat_a.pk}/messages/", {"text": "Bye!", "client_message_id": "c-3"}),
        409,
        "client_message_id_conflict",
    )
    assert "client_message_id" in error["fields"]


def test_free_text_to_a_meta_chat_with_a_closed_window_is_a_422(bob_api, team):
    meta = ChannelFactory(
        workspace=team.workspace_a, provider=Channel.Provider.META, meta_phone_number_id="1065"
    )
    chat = ChatFactory(channel=meta, window_expires_at=timezone.now() - timedelta(hours=1))
    assert_error(
        bob_api.post(f"/chats/{chat.pk}/messages/", {"text": "Still there?", "client_message_id": "c-4"}),
        422,
        "window_closed",
    )
    # A template is still allowed.
    template = {"name": "follow_up", "language": "en_US"}
    message = data_of(
        bob_api.post(
            f"/chats/{chat.pk}/messages/",
            {"type": "template", "template": template, "client_message_id": "c-5"},
        ),
        202,
    )
    assert message["type"] == "template"


def test_sending_validates_the_body(bob_api, team):
    error = assert_error(bob_api.post(f"/chats/{team.chat_a.pk}/messages/", {"type": "fax"}), 400)
    assert {"type", "client_message_id"} <= set(error["fields"])
    # The inbox's own refusal (empty text) is a 400 too.
    assert_error(
        bob_api.post(f"/chats/{team.chat_a.pk}/messages/", {"text": " ", "client_message_id": "c-6"}), 400
    )


def test_a_reply_must_quote_a_message_of_the_same_chat(bob_api, team):
    error = assert_error(
        bob_api.post(
            f"/chats/{team.chat_a.pk}/messages/",
            {"text": "re", "client_message_id": "c-7", "reply_to": team.message_b.pk},
        ),
        400,
    )
    assert "reply_to" in error["fields"]
    message = data_of(
        bob_api.post(
            f"/chats/{team.chat_a.pk}/messages/",
            {"text": "re", "client_message_id": "c-8", "reply_to": team.message_a.pk},
        ),
        202,
    )
    assert message["reply_to_id"] == team.message_a.pk


def test_a_message_reads_with_its_delivery_timeline(bob_api, team):
    from inbox.models import Message
    from tests.factories import MessageFactory

    sent = MessageFactory(chat=team.chat_a, direction=Message.Direction.OUTBOUND, status="delivered")
    now = timezone.now()
    for offset, kind in enumerate(["queued", "sent", "delivered"]):
        MessageEvent.objects.create(message=sent, kind=kind, occurred_at=now + timedelta(seconds=offset))
    message = data_of(bob_api.get(f"/messages/{sent.pk}/"))
    assert message["id"] == sent.pk
    assert [e["kind"] for e in message["timeline"]] == ["queued", "sent", "delivered"]


def test_an_inbound_message_reads_received_stored_processed_pushed(
    bob_api, team, django_capture_on_commit_callbacks
):
    from channels_app.providers.base import InboundMessage
    from inbox.services import inbound_events_apply

    provider_time = timezone.now() - timedelta(seconds=3)
    event = InboundMessage(
        wa_message_id="wamid.timeline",
        wa_chat_id="4915550001@s.whatsapp.net",
        from_me=False,
        type="text",
        timestamp=provider_time,
        text="where is my order?",
    )
    with django_capture_on_commit_callbacks(execute=True):
        inbound_events_apply(
            channel=team.channel_a, events=[event], received_at=timezone.now() - timedelta(seconds=1)
        )
    from inbox.models import Message

    message = Message.objects.get(wa_message_id="wamid.timeline")
    timeline = data_of(bob_api.get(f"/messages/{message.pk}/"))["timeline"]
    assert [e["kind"] for e in timeline] == ["received", "stored", "processed", "pushed"]
    assert timeline[0]["occurred_at"].startswith(provider_time.isoformat()[:19])


def test_a_missing_message_is_a_404(bob_api):
    assert_error(bob_api.get("/messages/999999/"), 404)
