"""Whapi webhook bodies (published samples and variations) → normalized events."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from channels_app.providers.base import (
    ChannelStatusUpdate,
    ChatUpdate,
    InboundMessage,
    MessageEdit,
    MessageRevoke,
    Reaction,
    StatusUpdate,
    UnknownEvent,
    WebhookParseError,
)
from channels_app.providers.whapi.parse import (
    parse_webhook,
    whapi_body_channel_id,
    whapi_event_name,
    whapi_event_type,
)
from tests.webhooks.samples import fixture

TARGET = "p.w30M7fgwWD4XwHu.g4CA-gBgTwl0rVw"


def parse_one(name: str):
    events = parse_webhook(fixture("whapi", name))
    assert len(events) == 1, events
    return events[0]


def test_it_parses_the_published_incoming_text():
    event = parse_one("whapi_incoming_text.json")
    assert isinstance(event, InboundMessage)
    assert event.wa_message_id == TARGET
    assert event.wa_chat_id == "919984351847@s.whatsapp.net"
    assert event.from_me is False
    assert event.text == "Hello world"
    assert event.contact_name == "Gerald"
    assert event.contact_phone == "919984351847"
    assert event.is_group is False
    assert event.timestamp == datetime.fromtimestamp(1712995245, tz=UTC)


def test_it_parses_a_group_message_with_its_author():
    event = parse_one("whapi_incoming_group_text.json")
    assert isinstance(event, InboundMessage)
    assert event.is_group is True
    assert event.wa_chat_id == "120363271212442249@g.us"
    assert event.author_wa_id == "919984351847"
    assert event.author_name == "Gerald"
    # The author is not the chat: a group's name never becomes the author's.
    assert event.contact_name == ""
    assert event.contact_phone == ""


def test_it_parses_a_button_reply_and_its_quoted_message():
    event = parse_one("whapi_incoming_button_reply.json")
    assert isinstance(event, InboundMessage)
    assert event.type == "interactive"
    assert event.text == "Button1"
    assert event.payload["id"] == "ButtonsV3:randomId1"
    assert event.reply_to_wa_id == "yqKj.Z7XWg0g1lA-wD8Sij1GoQ"
    assert event.contact_name == "Jonathan Customer"


def test_it_parses_echoes_from_the_api_and_from_the_phone():
    api = parse_one("whapi_outgoing_from_api.json")
    phone = parse_one("whapi_outgoing_from_mobile.json")
    for event in (api, phone):
        assert isinstance(event, InboundMessage)
        assert event.from_me is True
        assert event.wa_chat_id == "919984351847@s.whatsapp.net"
        assert event.author_wa_id == ""
        # Our own name (from_name) must never become the customer's name.
        assert event.contact_name == ""
    assert api.text == "Hello from API"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("name", "expected_type", "link"),
    [
        ("variation_image_link.json", "image", True),
        ("variation_voice.json", "voice", True),
        ("variation_document.json", "document", False),
    ],
)
def test_it_parses_media_with_its_link(name, expected_type, link):
    event = parse_one(name)
    assert isinstance(event, InboundMessage) and event.media is not None
    assert event.type == expected_type
    assert event.media.media_id
    assert bool(event.media.url) is link


def test_it_parses_location_and_contact_cards():
    location = parse_one("variation_location.json")
    assert isinstance(location, InboundMessage)
    assert location.type == "location"
    assert location.payload["longitude"] == 13.405
    contact = parse_one("variation_contact.json")
    assert isinstance(contact, InboundMessage)
    assert contact.type == "contacts"
    assert contact.text == "Maria"


def test_it_turns_action_messages_into_reactions_edits_and_revokes():
    reaction = parse_one("variation_action_reaction.json")
    assert isinstance(reaction, Reaction)
    assert (reaction.target_wa_message_id, reaction.emoji, reaction.reactor_wa_id) == (
        TARGET,
        "👍",
        "919984351847",
    )
    removed = parse_one("variation_action_reaction_removed.json")
    assert isinstance(removed, Reaction) and removed.emoji == ""
    edit = parse_one("variation_action_edit.json")
    assert isinstance(edit, MessageEdit)
    assert (edit.wa_message_id, edit.text) == (TARGET, "Hello world (edited)")
    revoke = parse_one("variation_action_delete.json")
    assert isinstance(revoke, MessageRevoke) and revoke.wa_message_id == TARGET


def test_it_parses_messages_patch_edits_with_the_method_alias():
    body = fixture("whapi", "variation_messages_patch_edit.json")
    assert whapi_event_name(body) == ("messages", "patch")
    event = parse_one("variation_messages_patch_edit.json")
    assert isinstance(event, MessageEdit)
    assert event.text == "Hello there, world"
    assert event.timestamp == datetime.fromtimestamp(1712995460, tz=UTC)


def test_it_parses_messages_removed_as_revokes():
    event = parse_one("variation_messages_removed.json")
    assert isinstance(event, MessageRevoke)
    assert event.wa_message_id == TARGET


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("whapi_status_delivered.json", "delivered"),
        ("whapi_status_read.json", "read"),
        ("variation_status_sent.json", "sent"),
        ("variation_deprecated_ack.json", "delivered"),
    ],
)
def test_it_parses_statuses(name, status):
    event = parse_one(name)
    assert isinstance(event, StatusUpdate)
    assert event.status == status
    assert event.wa_message_id == "YhNqCveDWW90_t8lzrW25w-wO4Twl0rVw"
    assert event.wa_chat_id == "919984351847@s.whatsapp.net"


def test_it_keeps_the_reason_of_a_failed_status():
    event = parse_one("variation_status_failed.json")
    assert isinstance(event, StatusUpdate)
    assert event.status == "failed"
    assert event.error_code == "400"
    assert event.error_message == "Recipient is not on WhatsApp: number not registered"


def test_it_parses_chat_post_patch_and_delete():
    post = parse_one("whapi_chats_post.json")
    assert isinstance(post, ChatUpdate)
    assert (post.wa_chat_id, post.action, post.unread_count) == ("919984351847@s.whatsapp.net", "post", 1)
    patch = parse_one("variation_chats_patch.json")
    assert isinstance(patch, ChatUpdate)
    assert (patch.action, patch.name) == ("patch", "Gerald Smith")
    delete = parse_one("whapi_chats_delete.json")
    assert isinstance(delete, ChatUpdate) and delete.action == "delete"


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("whapi_channel_health_init.json", "pending"),
        ("whapi_channel_health_launch.json", "pending"),
        ("whapi_channel_health_qr.json", "disconnected"),
        ("whapi_channel_health_error.json", "disconnected"),
        ("variation_health_auth.json", "connected"),
        ("whapi_users_post.json", "connected"),
        ("whapi_users_delete.json", "disconnected"),
    ],
)
def test_it_maps_health_and_login_events_to_channel_status(name, status):
    event = parse_one(name)
    assert isinstance(event, ChannelStatusUpdate)
    assert event.status == status


def test_it_marks_unknown_event_types_as_unknown_events():
    event = parse_one("variation_presences.json")
    assert isinstance(event, UnknownEvent)
    assert event.kind == "whapi.presences.post"


def test_it_reads_the_channel_id_and_event_type():
    body = fixture("whapi", "whapi_incoming_text.json")
    assert whapi_body_channel_id(body) == "MANTIS-M72HC"
    assert whapi_event_type(body) == "messages.post"
    assert whapi_event_type(fixture("whapi", "variation_deprecated_ack.json")) == "statuses.post"
    assert whapi_event_type("nonsense") == "invalid"


def test_it_refuses_a_body_that_is_not_an_object():
    with pytest.raises(WebhookParseError):
        parse_webhook(["messages"])
