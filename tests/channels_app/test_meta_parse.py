"""Meta webhook bodies (published samples and variations) → normalized events."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from channels_app.providers.base import (
    InboundMessage,
    ProviderNotice,
    Reaction,
    StatusUpdate,
    UnknownEvent,
    WebhookParseError,
)
from channels_app.providers.meta.parse import meta_event_type, meta_phone_number_ids, parse_webhook
from tests.webhooks.samples import fixture

PID = "106540352242922"


def parse_one(name: str, phone_number_id: str | None = None):
    events = parse_webhook(fixture("meta", name), phone_number_id=phone_number_id)
    assert len(events) == 1, events
    return events[0]


def test_it_parses_the_published_text_message_with_the_profile_name():
    event = parse_one("meta_text.json", PID)
    assert isinstance(event, InboundMessage)
    assert event.wa_message_id == "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
    assert event.wa_chat_id == "16505551234"
    assert event.from_me is False
    assert event.type == "text"
    assert event.text == "Does it come in another color?"
    assert event.contact_name == "Sheena Nelson"
    assert event.timestamp == datetime.fromtimestamp(1749416383, tz=UTC)


def test_it_keeps_the_referred_product_and_context_of_a_message_business_tap():
    event = parse_one("meta_text_message_business_button.json")
    assert isinstance(event, InboundMessage)
    assert event.reply_to_wa_id == "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGA9wcm9kdWN0X2lucXVpcnkA"
    assert event.payload["referred_product"]["product_retailer_id"] == "di9ozbzfi4"


def test_it_parses_image_media_metadata_with_and_without_a_url():
    with_url = parse_one("meta_image.json")
    assert isinstance(with_url, InboundMessage) and with_url.media is not None
    assert with_url.type == "image"
    assert with_url.media.media_id == "1003383421387256"
    assert with_url.media.mime_type == "image/jpeg"
    assert with_url.media.sha256 == "SfInY0gGKTsJlUWbwxC1k+FAD0FZHvzwfpvO0zX0GUI="
    assert with_url.media.url.startswith("https://lookaside.fbsbx.com/")
    assert with_url.text == with_url.media.caption == "Taj Mahal"
    without_url = parse_one("pywa_image_no_url.json")
    assert isinstance(without_url, InboundMessage) and without_url.media is not None
    assert without_url.media.url == ""
    assert without_url.media.media_id == "65463453"


@pytest.mark.parametrize(
    ("name", "expected_type", "media_id"),
    [
        ("variation_video.json", "video", "2001"),
        ("variation_audio_voice.json", "voice", "2002"),
        ("variation_document.json", "document", "2003"),
        ("variation_sticker.json", "sticker", "2004"),
    ],
)
def test_it_parses_every_media_type(name, expected_type, media_id):
    event = parse_one(name)
    assert isinstance(event, InboundMessage) and event.media is not None
    assert event.type == expected_type
    assert event.media.media_id == media_id


def test_it_keeps_a_document_filename():
    event = parse_one("variation_document.json")
    assert isinstance(event, InboundMessage) and event.media is not None
    assert event.media.filename == "invoice.pdf"
    assert event.text == "Invoice"


def test_it_parses_a_location_into_payload_and_a_readable_text():
    event = parse_one("variation_location.json")
    assert isinstance(event, InboundMessage)
    assert event.type == "location"
    assert event.payload["latitude"] == 38.9
    assert event.text == "Philz Coffee · 101 Forest Ave, Palo Alto"


def test_it_parses_shared_contacts():
    event = parse_one("variation_contacts.json")
    assert isinstance(event, InboundMessage)
    assert event.type == "contacts"
    assert event.text == "Barbara Johnson"
    assert event.payload["contacts"][0]["phones"][0]["wa_id"] == "16505559999"


def test_it_parses_interactive_button_and_list_replies():
    button = parse_one("meta_interactive_button_reply.json")
    assert isinstance(button, InboundMessage)
    assert button.type == "interactive"
    assert button.text == "Change"
    assert button.payload == {"reply_type": "button_reply", "id": "change-button", "title": "Change"}
    assert button.reply_to_wa_id == "wamid.HBgLMTY0NjcwNDM1OTUVAgARGBJBM0Y4RUU0RUNFQkFDMjYzQUMA"
    listed = parse_one("variation_list_reply.json")
    assert isinstance(listed, InboundMessage)
    assert listed.text == "Express"
    assert listed.payload["id"] == "priority_express"


def test_it_parses_a_template_quick_reply_button():
    event = parse_one("meta_template_quick_reply_button.json")
    assert isinstance(event, InboundMessage)
    assert event.type == "button"
    assert event.text == "Unsubscribe"
    assert event.payload == {"payload": "Unsubscribe"}


def test_it_turns_reactions_into_reaction_events_with_escaped_unicode():
    meta_reaction = parse_one("meta_reaction.json")
    assert isinstance(meta_reaction, Reaction)
    assert meta_reaction.emoji == "👍"
    assert (
        meta_reaction.target_wa_message_id == "wamid.HBgLMTQxMjU1NTA4MjkVAgASGBQzQUNCNjk5RDUwNUZGMUZEM0VBRAA="
    )
    assert meta_reaction.reactor_wa_id == "16505551234"
    pywa = parse_one("pywa_reaction.json")
    assert isinstance(pywa, Reaction)
    assert pywa.emoji == "😮"


def test_it_reads_a_reaction_without_emoji_as_a_removal():
    event = parse_one("meta_reaction_removed.json")
    assert isinstance(event, Reaction)
    assert event.emoji == ""


def test_it_keeps_unsupported_messages_with_their_errors():
    event = parse_one("variation_unsupported.json")
    assert isinstance(event, InboundMessage)
    assert event.type == "unsupported"
    assert event.payload["errors"][0]["code"] == 131051


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("meta_status_sent.json", "sent"),
        ("meta_status_sent_v24_minimal.json", "sent"),
        ("pywa_status_delivered.json", "delivered"),
        ("pywa_status_read.json", "read"),
        ("variation_status_read_played.json", "read"),
    ],
)
def test_it_parses_statuses(name, status):
    event = parse_one(name)
    assert isinstance(event, StatusUpdate)
    assert event.status == status
    assert event.wa_message_id
    assert event.wa_chat_id


def test_it_keeps_the_reason_of_a_failed_status():
    event = parse_one("meta_status_failed_131049.json")
    assert isinstance(event, StatusUpdate)
    assert event.status == "failed"
    assert event.error_code == "131049"
    assert "healthy ecosystem engagement" in event.error_message
    pywa = parse_one("pywa_status_failed_130472.json")
    assert isinstance(pywa, StatusUpdate)
    assert pywa.error_code == "130472"


def test_it_reports_value_errors_as_a_provider_notice():
    event = parse_one("meta_value_errors_130429.json")
    assert isinstance(event, ProviderNotice)
    assert event.code == "130429"
    assert "Rate limit hit" in event.message


def test_it_marks_unknown_change_fields_as_unknown_events():
    event = parse_one("variation_account_update.json")
    assert isinstance(event, UnknownEvent)
    assert event.kind == "meta.account_update"


def test_it_routes_a_body_for_two_numbers_by_phone_number_id():
    body = fixture("meta", "variation_two_numbers.json")
    assert meta_phone_number_ids(body) == [PID, "222222222222222"]
    first = parse_webhook(body, phone_number_id=PID)
    second = parse_webhook(body, phone_number_id="222222222222222")
    assert [e.text for e in first] == ["to number one"]  # type: ignore[union-attr]
    assert [e.text for e in second] == ["to number two"]  # type: ignore[union-attr]
    assert len(parse_webhook(body)) == 2


def test_it_labels_event_types_for_the_admin_list():
    assert meta_event_type(fixture("meta", "meta_text.json")) == "messages"
    assert meta_event_type(fixture("meta", "pywa_status_read.json")) == "statuses"
    assert meta_event_type(fixture("meta", "meta_value_errors_130429.json")) == "errors"
    assert meta_event_type({"nope": 1}) == "invalid"


def test_it_refuses_a_body_that_is_not_a_meta_webhook():
    with pytest.raises(WebhookParseError):
        parse_webhook({"messages": []})
    with pytest.raises(WebhookParseError):
        parse_webhook(["not", "an", "object"])
