"""Processing stored events end to end: every fixture type, idempotency, retries, leases, replay."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from channels_app.models import Channel
from inbox.models import Chat, DeferredStatus, Message, MessageEvent, MessageReaction
from inbox.services import message_record_provider_id
from tests.factories import MessageFactory
from tests.webhooks.helpers import deliver, deliver_fixture, store
from tests.webhooks.samples import FIXTURES, fixture_bytes
from webhooks import processor
from webhooks.models import WebhookEvent
from webhooks.processor import webhook_event_process, webhook_events_sweep
from webhooks.tasks import webhook_events_requeue_due

pytestmark = pytest.mark.django_db

WHAPI_MSG = "p.w30M7fgwWD4XwHu.g4CA-gBgTwl0rVw"
WHAPI_CHAT = "919984351847@s.whatsapp.net"


# ---------------------------------------------------------------- Whapi types


def test_an_incoming_whapi_text_creates_chat_contact_and_message(whapi_channel):
    deliver_fixture(whapi_channel, "whapi_incoming_text.json")
    chat = Chat.objects.get(channel=whapi_channel, wa_chat_id=WHAPI_CHAT)
    message = Message.objects.get(channel=whapi_channel, wa_message_id=WHAPI_MSG)
    assert message.chat == chat
    assert (message.direction, message.status, message.text) == ("in", "received", "Hello world")
    assert chat.contact_name == "Gerald"
    assert chat.contact is not None and chat.contact.wa_id == "919984351847"
    assert chat.unread_count == 1
    assert chat.last_message_preview == "Hello world"
    assert chat.last_message_at == message.sort_at == message.provider_timestamp
    assert chat.window_expires_at is None  # only Meta has a customer-service window
    assert list(message.events.values_list("kind", flat=True)) == ["received"]
    whapi_channel.refresh_from_db()
    assert whapi_channel.last_inbound_at is not None


def test_a_group_message_keeps_its_author(whapi_channel):
    deliver_fixture(whapi_channel, "whapi_incoming_group_text.json")
    chat = Chat.objects.get(channel=whapi_channel, wa_chat_id="120363271212442249@g.us")
    message = chat.messages.get()
    assert chat.is_group is True
    assert chat.contact is None
    assert (message.author_wa_id, message.author_name) == ("919984351847", "Gerald")


def test_a_button_reply_is_an_interactive_message(whapi_channel):
    deliver_fixture(whapi_channel, "whapi_incoming_button_reply.json")
    message = Message.objects.get(wa_message_id="g0jEG0ZsSobn4yNGGU3TAg-gDYOS60TLw")
    assert (message.type, message.text) == ("interactive", "Button1")
    assert message.reply_to_wa_id == "yqKj.Z7XWg0g1lA-wD8Sij1GoQ"


def test_an_echo_from_the_phone_creates_an_outbound_message_without_unread(whapi_channel):
    deliver_fixture(whapi_channel, "whapi_outgoing_from_mobile.json")
    message = Message.objects.get(wa_message_id="YhNqCveDWW90_t8lzrW25w-wO4Twl0rVw")
    assert (message.direction, message.status, message.text) == ("out", "sent", "Hey bro")
    assert message.chat.unread_count == 0
    assert message.chat.last_message_preview == "Hey bro"


def test_whapi_media_messages_store_metadata_and_queue_a_download(
    whapi_channel, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        deliver_fixture(whapi_channel, "variation_image_link.json")
    message = Message.objects.get(wa_message_id="WhapiImg-0001")
    assert message.type == "image"
    assert message.media_id == "jpeg-4b21f0"
    assert message.media_mime_type == "image/jpeg"
    assert message.media_size == 12345
    assert message.media_url.endswith("jpeg-4b21f0.jpeg")
    assert message.media_status == Message.MediaStatus.PENDING
    assert message.text == "receipt"
    assert message.chat.last_message_preview == "📷 Photo: receipt"
    assert len(callbacks) >= 2  # the realtime pushes and the media download


@pytest.mark.parametrize(
    ("name", "wa_id", "type_"),
    [
        ("variation_voice.json", "WhapiVoice-0001", "voice"),
        ("variation_document.json", "WhapiDoc-0001", "document"),
        ("variation_location.json", "WhapiLoc-0001", "location"),
        ("variation_contact.json", "WhapiCard-0001", "contacts"),
    ],
)
def test_other_whapi_types_become_messages(whapi_channel, name, wa_id, type_):
    deliver_fixture(whapi_channel, name)
    assert Message.objects.get(wa_message_id=wa_id).type == type_


def test_whapi_reactions_attach_to_their_target_and_can_be_removed(whapi_channel):
    deliver_fixture(whapi_channel, "whapi_incoming_text.json")
    deliver_fixture(whapi_channel, "variation_action_reaction.json")
    target = Message.objects.get(wa_message_id=WHAPI_MSG)
    reaction = MessageReaction.objects.get(message=target)
    assert (reaction.emoji, reaction.reactor_wa_id) == ("👍", "919984351847")
    # A reaction is not a message: no second bubble, no unread.
    assert Message.objects.filter(chat=target.chat).count() == 1
    assert target.chat.unread_count == 1
    deliver_fixture(whapi_channel, "variation_action_reaction_removed.json")
    assert not MessageReaction.objects.filter(message=target).exists()


def test_whapi_edits_keep_the_previous_text_and_ignore_older_edits(whapi_channel):
    deliver_fixture(whapi_channel, "whapi_incoming_text.json")
    deliver_fixture(whapi_channel, "variation_messages_patch_edit.json")  # edit at …460
    message = Message.objects.get(wa_message_id=WHAPI_MSG)
    assert (message.text, message.previous_text) == ("Hello there, world", "Hello world")
    assert message.edited_at is not None and message.edited_at.timestamp() == 1712995460
    deliver_fixture(whapi_channel, "variation_action_edit.json")  # an older edit (…450) arriving late
    message.refresh_from_db()
    assert message.text == "Hello there, world"
    assert message.chat.last_message_preview == "Hello there, world"
    assert list(message.events.filter(kind="edited").values_list("detail__text", flat=True)) == [
        "Hello there, world"
    ]


@pytest.mark.parametrize("name", ["variation_action_delete.json", "variation_messages_removed.json"])
def test_whapi_revokes_soft_delete_the_message(whapi_channel, name):
    deliver_fixture(whapi_channel, "whapi_incoming_text.json")
    deliver_fixture(whapi_channel, name)
    message = Message.objects.get(wa_message_id=WHAPI_MSG)
    assert message.deleted_at is not None
    assert message.text == "Hello world"  # kept for audit
    assert message.chat.last_message_preview == "🚫 This message was deleted"


def test_whapi_statuses_move_an_outbound_message_forward_only(whapi_channel):
    deliver_fixture(whapi_channel, "whapi_outgoing_from_mobile.json")
    deliver_fixture(whapi_channel, "whapi_status_read.json")
    deliver_fixture(whapi_channel, "whapi_status_delivered.json")  # late: must not move it back
    message = Message.objects.get(wa_message_id="YhNqCveDWW90_t8lzrW25w-wO4Twl0rVw")
    assert message.status == "read"
    assert message.delivered_at is not None and message.read_at is not None
    assert sorted(message.events.values_list("kind", flat=True)) == ["delivered", "read", "received", "sent"]


def test_a_whapi_failed_status_keeps_its_reason(whapi_channel):
    deliver_fixture(whapi_channel, "whapi_outgoing_from_mobile.json")
    deliver_fixture(whapi_channel, "variation_status_failed.json")
    message = Message.objects.get(wa_message_id="YhNqCveDWW90_t8lzrW25w-wO4Twl0rVw")
    assert (message.status, message.error_code) == ("failed", "400")
    assert message.error_message == "Recipient is not on WhatsApp: number not registered"


def test_whapi_chat_events_rename_and_archive_known_chats_only(whapi_channel):
    deliver_fixture(whapi_channel, "whapi_chats_post.json")
    assert not Chat.objects.filter(channel=whapi_channel, wa_chat_id=WHAPI_CHAT).exists()
    deliver_fixture(whapi_channel, "whapi_incoming_text.json")
    deliver_fixture(whapi_channel, "variation_chats_patch.json")
    chat = Chat.objects.get(channel=whapi_channel, wa_chat_id=WHAPI_CHAT)
    assert chat.contact_name == "Gerald Smith"
    deliver_fixture(whapi_channel, "whapi_chats_delete.json")
    chat.refresh_from_db()
    assert chat.archived is True
    assert chat.messages.count() == 1


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("whapi_channel_health_qr.json", "disconnected"),
        ("whapi_channel_health_init.json", "pending"),
        ("whapi_channel_health_launch.json", "pending"),
        ("whapi_channel_health_error.json", "disconnected"),
        ("variation_health_auth.json", "connected"),
        ("whapi_users_delete.json", "disconnected"),
    ],
)
def test_whapi_health_and_logout_set_the_channel_status(whapi_channel, name, status):
    whapi_channel.status = Channel.Status.DEGRADED
    whapi_channel.save()
    deliver_fixture(whapi_channel, name)
    whapi_channel.refresh_from_db()
    assert whapi_channel.status == status


def test_whapi_login_reconnects_the_channel(whapi_channel):
    deliver_fixture(whapi_channel, "whapi_users_delete.json")
    deliver_fixture(whapi_channel, "whapi_users_post.json")
    whapi_channel.refresh_from_db()
    assert whapi_channel.status == "connected"
    assert "Jonathan" in whapi_channel.status_detail


def test_an_unknown_whapi_event_is_stored_and_marked_not_failed(whapi_channel):
    outcome = deliver(whapi_channel, fixture_bytes("whapi", "variation_presences.json"))
    assert outcome.status == "processed"
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.PROCESSED
    assert event.event_type == "unknown:whapi.presences.post"


# ---------------------------------------------------------------- Meta types


def test_a_meta_text_creates_the_chat_and_opens_the_24_hour_window(meta_channel):
    deliver_fixture(meta_channel, "meta_text.json")
    chat = Chat.objects.get(channel=meta_channel, wa_chat_id="16505551234")
    message = chat.messages.get()
    assert message.text == "Does it come in another color?"
    assert chat.contact_name == "Sheena Nelson"
    assert message.provider_timestamp is not None
    assert chat.window_expires_at == message.provider_timestamp + timedelta(hours=24)
    assert chat.unread_count == 1


@pytest.mark.parametrize(
    ("name", "type_", "media"),
    [
        ("meta_image.json", "image", True),
        ("variation_video.json", "video", True),
        ("variation_audio_voice.json", "voice", True),
        ("variation_document.json", "document", True),
        ("variation_sticker.json", "sticker", True),
        ("variation_location.json", "location", False),
        ("variation_contacts.json", "contacts", False),
        ("meta_interactive_button_reply.json", "interactive", False),
        ("variation_list_reply.json", "interactive", False),
        ("meta_template_quick_reply_button.json", "button", False),
        ("variation_unsupported.json", "unsupported", False),
        ("meta_text_message_business_button.json", "text", False),
    ],
)
def test_every_meta_message_type_becomes_one_message(meta_channel, name, type_, media):
    deliver_fixture(meta_channel, name)
    message = Message.objects.get(channel=meta_channel)
    assert message.type == type_
    assert message.direction == "in"
    assert (message.media_status == Message.MediaStatus.PENDING) is media


def test_a_meta_image_keeps_its_metadata(meta_channel):
    deliver_fixture(meta_channel, "meta_image.json")
    message = Message.objects.get(channel=meta_channel)
    assert (message.media_id, message.media_mime_type) == ("1003383421387256", "image/jpeg")
    assert message.media_sha256 == "SfInY0gGKTsJlUWbwxC1k+FAD0FZHvzwfpvO0zX0GUI="
    assert message.text == "Taj Mahal"


def test_meta_reactions_attach_to_our_message_and_are_removed(meta_channel, team):
    chat = Chat.objects.create(workspace=team.workspace_a, channel=meta_channel, wa_chat_id="16505551234")
    ours = MessageFactory(
        chat=chat,
        direction="out",
        status="sent",
        wa_message_id="wamid.HBgLMTQxMjU1NTA4MjkVAgASGBQzQUNCNjk5RDUwNUZGMUZEM0VBRAA=",
    )
    deliver_fixture(meta_channel, "meta_reaction.json")
    assert MessageReaction.objects.get(message=ours).emoji == "👍"
    deliver_fixture(meta_channel, "meta_reaction_removed.json")
    assert not MessageReaction.objects.filter(message=ours).exists()


def test_meta_statuses_apply_to_a_sent_message_and_failed_keeps_its_reason(pywa_channel, team):
    chat = Chat.objects.create(workspace=team.workspace_a, channel=pywa_channel, wa_chat_id="972987654321")
    ours = MessageFactory(chat=chat, direction="out", status="sent", wa_message_id="wamid.xyzxyz")
    deliver_fixture(pywa_channel, "pywa_status_failed_130472.json")
    ours.refresh_from_db()
    assert (ours.status, ours.error_code) == ("failed", "130472")
    deliver_fixture(pywa_channel, "pywa_status_delivered.json")
    deliver_fixture(pywa_channel, "pywa_status_read.json")
    ours.refresh_from_db()
    # delivered/read prove the phone got it; the failure's reason stays for the record.
    assert (ours.status, ours.error_code) == ("read", "130472")


def test_a_meta_status_for_an_unknown_id_is_deferred(meta_channel):
    deliver_fixture(meta_channel, "meta_status_failed_131049.json")
    deferred = DeferredStatus.objects.get(channel=meta_channel)
    assert (deferred.status, deferred.error_code) == ("failed", "131049")
    deliver_fixture(meta_channel, "meta_status_failed_131049.json")
    assert DeferredStatus.objects.count() == 1


def test_meta_value_errors_are_processed_without_touching_messages(meta_channel, caplog):
    deliver_fixture(meta_channel, "meta_value_errors_130429.json")
    assert "130429" in caplog.text
    assert not Message.objects.filter(channel=meta_channel).exists()


def test_an_unknown_meta_field_is_stored_and_marked(meta_channel):
    deliver_fixture(meta_channel, "variation_account_update.json")
    assert WebhookEvent.objects.get().event_type == "unknown:meta.account_update"


def test_a_meta_event_only_applies_its_own_numbers_changes(meta_channel):
    deliver_fixture(meta_channel, "variation_two_numbers.json")
    assert list(Message.objects.filter(channel=meta_channel).values_list("text", flat=True)) == [
        "to number one"
    ]


# ---------------------------------------------------------------- idempotency


def test_it_dedupes_a_redelivered_message(whapi_channel):
    for _ in range(3):
        deliver_fixture(whapi_channel, "whapi_incoming_text.json")
    chat = Chat.objects.get(channel=whapi_channel, wa_chat_id=WHAPI_CHAT)
    assert chat.messages.count() == 1
    assert chat.unread_count == 1
    assert MessageEvent.objects.count() == 1
    assert WebhookEvent.objects.filter(status="processed").count() == 3


def _meta_batch_messages(count: int) -> list[dict]:
    return [
        {
            "from": "16505551234",
            "id": f"wamid.batch.in.{i}",
            "timestamp": str(1749416000 + i),
            "type": "text",
            "text": {"body": f"customer says {i}"},
        }
        for i in range(count)
    ]


def _meta_batch_statuses() -> list[dict]:
    statuses: list[dict] = []
    for i in range(4):
        for j, status in enumerate(("sent", "delivered", "read")):
            statuses.append(
                {
                    "id": f"wamid.batch.out.{i}",
                    "status": status,
                    "timestamp": str(1749416100 + i * 10 + j),
                    "recipient_id": "16505551234",
                }
            )
    statuses.append(
        {
            "id": "wamid.batch.out.4",
            "status": "failed",
            "timestamp": "1749416200",
            "recipient_id": "16505551234",
            "errors": [
                {"code": 131026, "title": "Message undeliverable", "message": "Message undeliverable"}
            ],
        }
    )
    statuses.append(
        {
            "id": "wamid.batch.out.4",
            "status": "sent",
            "timestamp": "1749416190",
            "recipient_id": "16505551234",
        }
    )
    return statuses


def _meta_body(messages: list[dict], statuses: list[dict]) -> bytes:
    value: dict = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
    }
    if messages:
        value["messages"] = messages
    if statuses:
        value["statuses"] = statuses
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"value": value, "field": "messages"}]}],
        }
    ).encode()


def _seed_outbound(channel, team) -> list[Message]:
    """Five messages an agent sent: pending, no provider id yet (the send response has not come back)."""
    chat = Chat.objects.create(workspace=team.workspace_a, channel=channel, wa_chat_id="16505551234")
    return [
        MessageFactory(
            chat=chat,
            direction="out",
            status="pending",
            wa_message_id=None,
            client_message_id=f"c{i}",
            text=f"we say {i}",
        )
        for i in range(5)
    ]


SEND_RESPONSE_AT = datetime.fromtimestamp(1749416050, tz=UTC)


def _record_send_responses(outbound: list[Message]) -> None:
    for i, message in enumerate(outbound):
        message_record_provider_id(
            message=message, wa_message_id=f"wamid.batch.out.{i}", sent_at=SEND_RESPONSE_AT
        )


def _snapshot(channel) -> dict:
    chat = Chat.objects.get(channel=channel, wa_chat_id="16505551234")
    messages = {
        m.wa_message_id: (
            m.direction,
            m.status,
            m.text,
            m.sent_at,
            m.delivered_at,
            m.read_at,
            m.failed_at,
            m.error_code,
        )
        for m in Message.objects.filter(channel=channel)
    }
    events = sorted(
        (e.message.wa_message_id, e.kind, e.occurred_at)
        for e in MessageEvent.objects.filter(message__channel=channel)
        .exclude(kind="received")
        .select_related("message")
    )
    received = MessageEvent.objects.filter(message__channel=channel, kind="received").count()
    return {
        "messages": messages,
        "events": events,
        "received_rows": received,
        "unread": chat.unread_count,
        "preview": chat.last_message_preview,
        "last_message_at": chat.last_message_at,
        "window": chat.window_expires_at,
        "deferred": DeferredStatus.objects.filter(channel=channel).count(),
    }


def test_a_batch_redelivered_three_times_shuffled_equals_one_clean_delivery(team, meta_channel):
    """The issue's acceptance test: duplicates, out-of-order statuses, shuffled redeliveries, and statuses
    that beat the send response (parked, then applied when the sender records the provider id)."""
    from tests.webhooks.conftest import _meta_channel

    messages = _meta_batch_messages(6)
    statuses = _meta_batch_statuses()

    # Clean: the send responses, then one delivery with everything in order.
    _record_send_responses(_seed_outbound(meta_channel, team))
    deliver(meta_channel, _meta_body(messages, statuses))
    clean = _snapshot(meta_channel)

    # Messy: another number, same content, split into pieces, each piece delivered 3 times, shuffled,
    # statuses reversed and duplicated; the send responses come back halfway through.
    messy_channel = _meta_channel(team.workspace_b, "106540352242922-b")
    rng = random.Random(20260122)
    outbound = _seed_outbound(messy_channel, team)
    pieces = [_meta_body(messages[i : i + 2], []) for i in range(0, len(messages), 2)]
    reversed_statuses = list(reversed(statuses)) + statuses[:5]
    pieces += [_meta_body([], reversed_statuses[i : i + 3]) for i in range(0, len(reversed_statuses), 3)]
    deliveries = pieces * 3
    rng.shuffle(deliveries)
    half = len(deliveries) // 2
    for n, body in enumerate(deliveries):
        if n == half:
            assert DeferredStatus.objects.filter(channel=messy_channel).exists()
            _record_send_responses(outbound)
        body = body.replace(b'"106540352242922"', b'"106540352242922-b"')
        assert deliver(messy_channel, body).status == "processed"
    messy = _snapshot(messy_channel)

    assert messy == clean
    assert clean["unread"] == 6
    assert clean["deferred"] == 0
    assert clean["messages"]["wamid.batch.out.0"][1] == "read"
    assert clean["messages"]["wamid.batch.out.4"][1] == "failed"
    assert clean["messages"]["wamid.batch.out.4"][7] == "131026"


def test_a_status_that_beats_its_message_is_applied_when_the_echo_arrives(whapi_channel):
    deliver_fixture(whapi_channel, "whapi_status_read.json")
    assert DeferredStatus.objects.count() == 1
    deliver_fixture(whapi_channel, "whapi_outgoing_from_mobile.json")
    message = Message.objects.get(wa_message_id="YhNqCveDWW90_t8lzrW25w-wO4Twl0rVw")
    assert message.status == "read"
    assert DeferredStatus.objects.count() == 0


# ---------------------------------------------------------------- failures, leases, replay


def test_a_processing_error_retries_with_backoff_then_goes_dead(whapi_channel, monkeypatch):
    def boom(**kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr(processor, "inbound_events_apply", boom)
    event = store(whapi_channel, fixture_bytes("whapi", "whapi_incoming_text.json"))
    delays = []
    for attempt in range(1, 6):
        before = timezone.now()
        outcome = webhook_event_process(event_id=event.pk)
        event.refresh_from_db()
        assert event.attempts == attempt
        assert "database on fire" in event.last_error
        if attempt < 5:
            assert outcome.status == event.status == "failed"
            assert event.next_attempt_at is not None
            delays.append(round((event.next_attempt_at - before).total_seconds() / 60))
            # Not due yet: a second worker (or the sweep) cannot claim it early.
            assert webhook_event_process(event_id=event.pk).status == "skipped"
            WebhookEvent.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now())
        else:
            assert outcome.status == event.status == "dead"
            assert event.next_attempt_at is None
    assert delays == [1, 2, 4, 8]
    assert not Message.objects.filter(wa_message_id=WHAPI_MSG).exists()


def test_nul_characters_in_a_payload_are_dropped_so_the_message_is_stored(whapi_channel):
    # Postgres refuses NUL in text: the event failed until it went dead, and the message never arrived.
    body = {
        "messages": [
            {
                "id": "nul-text-1",
                "from_me": False,
                "type": "text",
                "chat_id": "4915550001@s.whatsapp.net",
                "timestamp": 1700000000,
                "text": {"body": "before\u0000after"},
                "from": "4915550001",
                "from_name": "Nu\u0000l Customer",
            }
        ],
        "event": {"type": "messages", "event": "post"},
        "channel_id": "",
    }
    assert deliver(whapi_channel, json.dumps(body)).status == "processed"
    message = Message.objects.get(wa_message_id="nul-text-1")
    assert message.text == "beforeafter"
    assert message.chat.contact_name == "Nul Customer"


@pytest.mark.parametrize(
    "body",
    [b'["not", "an", "object"]', b"[" * 100_000 + b"]" * 100_000],
    ids=["not-an-object", "nested-too-deep"],
)
def test_a_body_that_cannot_be_parsed_goes_dead_at_once(whapi_channel, body):
    outcome = deliver(whapi_channel, body)
    assert outcome.status == "dead"
    assert WebhookEvent.objects.get().attempts == 1


def test_an_event_stuck_in_processing_returns_to_pending_after_its_lease(whapi_channel):
    event = store(whapi_channel, fixture_bytes("whapi", "whapi_incoming_text.json"))
    # A worker claims it and dies before finishing (nothing applied, nothing marked).
    claimed = processor.webhook_event_claim(event_id=event.pk)
    assert claimed is not None and claimed.status == "processing"
    assert webhook_event_process(event_id=event.pk).status == "skipped"  # leased: nobody else runs it
    recovered, due = webhook_events_sweep()
    assert recovered == 0  # lease still valid
    WebhookEvent.objects.filter(pk=event.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    recovered, due = webhook_events_sweep()
    assert recovered == 1
    assert event.pk in due
    event.refresh_from_db()
    assert event.status == "pending"
    assert webhook_event_process(event_id=event.pk).status == "processed"
    assert Message.objects.filter(wa_message_id=WHAPI_MSG).count() == 1


def test_the_beat_task_requeues_due_events(whapi_channel):
    event = store(whapi_channel, fixture_bytes("whapi", "whapi_incoming_text.json"))
    # The kick was lost (e.g. the broker was down when the request committed).
    WebhookEvent.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now() - timedelta(minutes=1))
    result = webhook_events_requeue_due.apply().get()
    assert result == {"recovered": 0, "queued": 1}
    event.refresh_from_db()
    assert event.status == "processed"


def test_a_dead_event_can_be_replayed_and_a_processed_one_changes_nothing(whapi_channel, monkeypatch):
    from webhooks.services import webhook_events_replay

    event = store(whapi_channel, fixture_bytes("whapi", "whapi_incoming_text.json"))
    WebhookEvent.objects.filter(pk=event.pk).update(status="dead", attempts=5, last_error="was broken")
    event.refresh_from_db()
    assert webhook_events_replay(events=[event]) == 1
    event.refresh_from_db()
    assert (event.status, event.attempts, event.last_error) == ("pending", 0, "")
    assert webhook_event_process(event_id=event.pk).status == "processed"
    chat = Chat.objects.get(channel=whapi_channel, wa_chat_id=WHAPI_CHAT)
    before = (
        chat.unread_count,
        Message.objects.count(),
        MessageEvent.objects.count(),
        chat.last_message_preview,
    )

    event.refresh_from_db()
    assert webhook_events_replay(events=[event]) == 1
    assert webhook_event_process(event_id=event.pk).status == "processed"
    chat.refresh_from_db()
    after = (
        chat.unread_count,
        Message.objects.count(),
        MessageEvent.objects.count(),
        chat.last_message_preview,
    )
    assert after == before


def test_an_event_being_processed_is_not_replayed(whapi_channel):
    from webhooks.services import webhook_events_replay

    event = store(whapi_channel, fixture_bytes("whapi", "whapi_incoming_text.json"))
    claimed = processor.webhook_event_claim(event_id=event.pk)
    assert claimed is not None
    assert webhook_events_replay(events=[claimed]) == 0


def test_events_of_a_suspended_workspace_are_processed(whapi_channel, team):
    from tenants.models import Workspace

    Workspace.objects.filter(pk=team.workspace_a.pk).update(status=Workspace.Status.SUSPENDED)
    deliver_fixture(whapi_channel, "whapi_incoming_text.json")
    assert Message.objects.filter(channel=whapi_channel, wa_message_id=WHAPI_MSG).count() == 1


def test_the_fixture_files_are_all_covered():
    """Every stored fixture is exercised by this module or the parser tests."""
    tests_dir = Path(__file__).parent.parent
    sources = "".join(
        path.read_text(encoding="utf-8")
        for path in (
            Path(__file__),
            tests_dir / "channels_app" / "test_meta_parse.py",
            tests_dir / "channels_app" / "test_whapi_parse.py",
        )
    )
    fixtures = [
        p for provider in ("meta", "whapi") for p in (FIXTURES / provider).iterdir() if p.suffix == ".json"
    ]
    assert len(fixtures) > 50
    assert sorted(p.name for p in fixtures if p.name not in sources) == []
