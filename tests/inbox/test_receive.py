"""inbound_events_apply and message_record_provider_id: the inbound router's rules, one at a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from channels_app.models import Channel
from channels_app.providers.base import (
    ChannelStatusUpdate,
    InboundMessage,
    MediaInfo,
    MessageEdit,
    Reaction,
    StatusUpdate,
    UnknownEvent,
)
from inbox.models import Chat, DeferredStatus, Message, MessageReaction
from inbox.services import inbound_events_apply, message_record_provider_id
from tenants.realtime import chat_group, workspace_group
from tests.factories import ChannelFactory, MessageFactory
from tests.layer import received_frames

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
CHAT_ID = "4915550001@s.whatsapp.net"


def inbound(
    wa_id: str, *, at: datetime = T0, text: str = "hi", from_me: bool = False, **kw
) -> InboundMessage:
    return InboundMessage(
        wa_message_id=wa_id,
        wa_chat_id=kw.pop("wa_chat_id", CHAT_ID),
        from_me=from_me,
        type=kw.pop("type", "text"),
        timestamp=at,
        text=text,
        contact_name=kw.pop("contact_name", "" if from_me else "Customer"),
        **kw,
    )


def status(wa_id: str, value: str, at: datetime = T0, **kw) -> StatusUpdate:
    return StatusUpdate(wa_message_id=wa_id, status=value, timestamp=at, **kw)


@pytest.fixture
def channel(team) -> Channel:
    return team.channel_a


@pytest.fixture
def pending_outbound(channel, team) -> Message:
    chat = Chat.objects.create(workspace=team.workspace_a, channel=channel, wa_chat_id=CHAT_ID)
    return MessageFactory(  # type: ignore[return-value]
        chat=chat,
        direction="out",
        status="pending",
        wa_message_id=None,
        client_message_id="client-1",
        text="ours",
    )


# ---------------------------------------------------------------- chats and counters


def test_inbound_messages_count_unread_and_move_the_preview_forward_only(channel):
    inbound_events_apply(channel=channel, events=[inbound("m2", at=T0 + timedelta(minutes=2), text="newer")])
    inbound_events_apply(channel=channel, events=[inbound("m1", at=T0, text="older, arrived late")])
    chat = Chat.objects.get(channel=channel, wa_chat_id=CHAT_ID)
    assert chat.unread_count == 2
    assert chat.last_message_preview == "newer"
    assert chat.last_message_at == T0 + timedelta(minutes=2)
    ordered = list(chat.messages.order_by("sort_at", "id").values_list("wa_message_id", flat=True))
    assert ordered == ["m1", "m2"]


def test_the_same_event_applied_twice_changes_nothing_the_second_time(channel):
    events = [inbound("m1"), inbound("m2", at=T0 + timedelta(seconds=1))]
    first = inbound_events_apply(channel=channel, events=events)
    second = inbound_events_apply(channel=channel, events=events)
    assert (first.messages_created, second.messages_created, second.messages_duplicate) == (2, 0, 2)
    assert Chat.objects.get(channel=channel, wa_chat_id=CHAT_ID).unread_count == 2


def test_a_new_message_reopens_a_resolved_chat(channel, team):
    Chat.objects.create(workspace=team.workspace_a, channel=channel, wa_chat_id=CHAT_ID, status="resolved")
    inbound_events_apply(channel=channel, events=[inbound("m1")])
    assert Chat.objects.get(channel=channel, wa_chat_id=CHAT_ID).status == "open"


def test_meta_inbound_extends_the_window_and_never_shortens_it(team):
    meta = ChannelFactory(workspace=team.workspace_a, provider="meta", meta_phone_number_id="555")
    inbound_events_apply(
        channel=meta, events=[inbound("m2", at=T0 + timedelta(hours=3), wa_chat_id="4915550001")]
    )
    inbound_events_apply(channel=meta, events=[inbound("m1", at=T0, wa_chat_id="4915550001")])
    chat = Chat.objects.get(channel=meta)
    assert chat.window_expires_at == T0 + timedelta(hours=27)


def test_the_contact_name_follows_the_payload(channel):
    inbound_events_apply(channel=channel, events=[inbound("m1", contact_name="Ana")])
    inbound_events_apply(channel=channel, events=[inbound("m2", contact_name="Ana Maria")])
    chat = Chat.objects.get(channel=channel, wa_chat_id=CHAT_ID)
    assert chat.contact_name == "Ana Maria"
    assert chat.contact is not None and chat.contact.name == "Ana Maria"


def test_media_metadata_is_stored_and_marked_pending(channel):
    media = MediaInfo(media_id="mid-1", mime_type="image/png", sha256="abc", size=10, caption="look")
    inbound_events_apply(channel=channel, events=[inbound("m1", type="image", text="look", media=media)])
    message = Message.objects.get(wa_message_id="m1")
    assert (message.media_id, message.media_status, message.media_size) == ("mid-1", "pending", 10)


def test_channel_status_updates_go_through_the_channel_service(channel):
    inbound_events_apply(
        channel=channel, events=[ChannelStatusUpdate(status="disconnected", detail="Logged out")]
    )
    channel.refresh_from_db()
    assert (channel.status, channel.status_detail) == ("disconnected", "Logged out")


def test_unknown_events_are_reported_not_raised(channel):
    result = inbound_events_apply(channel=channel, events=[UnknownEvent(kind="whapi.calls.post")])
    assert result.unknown_kinds == ["whapi.calls.post"]


# ---------------------------------------------------------------- statuses


def test_statuses_only_move_forward_and_keep_each_time(channel, pending_outbound):
    message_record_provider_id(message=pending_outbound, wa_message_id="w1", sent_at=T0)
    inbound_events_apply(
        channel=channel,
        events=[
            status("w1", "read", T0 + timedelta(seconds=9)),
            status("w1", "delivered", T0 + timedelta(seconds=5)),
        ],
    )
    pending_outbound.refresh_from_db()
    assert pending_outbound.status == "read"
    assert pending_outbound.delivered_at == T0 + timedelta(seconds=5)
    assert pending_outbound.read_at == T0 + timedelta(seconds=9)
    kinds = sorted(pending_outbound.events.values_list("kind", flat=True))
    assert kinds == ["delivered", "read", "sent"]


def test_failed_beats_sent_but_not_delivered_and_keeps_its_reason(channel, pending_outbound):
    message_record_provider_id(message=pending_outbound, wa_message_id="w1", sent_at=T0)
    inbound_events_apply(
        channel=channel, events=[status("w1", "failed", T0, error_code="131026", error_message="no")]
    )
    pending_outbound.refresh_from_db()
    assert (pending_outbound.status, pending_outbound.error_code) == ("failed", "131026")
    inbound_events_apply(channel=channel, events=[status("w1", "sent", T0)])
    pending_outbound.refresh_from_db()
    assert pending_outbound.status == "failed"


def test_a_status_for_an_inbound_message_is_ignored(channel):
    inbound_events_apply(channel=channel, events=[inbound("m1")])
    result = inbound_events_apply(channel=channel, events=[status("m1", "read")])
    assert result.ignored == 1
    assert Message.objects.get(wa_message_id="m1").status == "received"


# ---------------------------------------------------------------- echoes and the send response


def test_an_echo_that_beats_the_send_response_is_merged_into_the_sent_message(channel, pending_outbound):
    inbound_events_apply(channel=channel, events=[inbound("w1", from_me=True, text="ours", at=T0)])
    inbound_events_apply(channel=channel, events=[status("w1", "delivered", T0 + timedelta(seconds=3))])
    assert Message.objects.filter(chat=pending_outbound.chat).count() == 2  # until the sender records the id

    merged = message_record_provider_id(
        message=pending_outbound, wa_message_id="w1", sent_at=T0 + timedelta(seconds=1)
    )
    assert Message.objects.filter(chat=pending_outbound.chat).count() == 1
    assert merged.pk == pending_outbound.pk
    assert (merged.wa_message_id, merged.client_message_id, merged.status) == ("w1", "client-1", "delivered")
    assert merged.sent_at == T0  # the echo's earlier time wins
    assert sorted(merged.events.values_list("kind", flat=True)) == ["delivered", "sent"]
    assert Chat.objects.get(pk=pending_outbound.chat_id).unread_count == 0


def test_an_echo_after_the_send_response_matches_the_existing_message(channel, pending_outbound):
    message_record_provider_id(message=pending_outbound, wa_message_id="w1", sent_at=T0)
    result = inbound_events_apply(channel=channel, events=[inbound("w1", from_me=True, text="ours")])
    assert result.messages_duplicate == 1
    assert Message.objects.filter(chat=pending_outbound.chat).count() == 1


def test_a_status_that_beats_the_send_response_is_applied_when_the_id_is_recorded(channel, pending_outbound):
    inbound_events_apply(channel=channel, events=[status("w1", "read", T0 + timedelta(seconds=8))])
    assert DeferredStatus.objects.filter(wa_message_id="w1").count() == 1
    message = message_record_provider_id(message=pending_outbound, wa_message_id="w1", sent_at=T0)
    assert message.status == "read"
    assert message.read_at == T0 + timedelta(seconds=8)
    assert not DeferredStatus.objects.exists()


def test_recording_the_same_id_twice_is_harmless(pending_outbound):
    message_record_provider_id(message=pending_outbound, wa_message_id="w1", sent_at=T0)
    again = message_record_provider_id(
        message=pending_outbound, wa_message_id="w1", sent_at=T0 + timedelta(seconds=5)
    )
    assert (again.status, again.sent_at) == ("sent", T0)
    assert again.events.filter(kind="sent").count() == 1


def test_recording_refuses_a_second_id_or_an_inbound_id(channel, pending_outbound):
    inbound_events_apply(channel=channel, events=[inbound("customer-msg")])
    # The sender's own transaction (a savepoint here) rolls back on these programming errors.
    with pytest.raises(ValueError, match="inbound"), transaction.atomic():
        message_record_provider_id(message=pending_outbound, wa_message_id="customer-msg")
    message_record_provider_id(message=pending_outbound, wa_message_id="w1")
    with pytest.raises(ValueError, match="already has"), transaction.atomic():
        message_record_provider_id(message=pending_outbound, wa_message_id="w2")
    pending_outbound.refresh_from_db()
    assert pending_outbound.wa_message_id == "w1"


# ---------------------------------------------------------------- edits and reactions


def test_an_edit_is_applied_once(channel):
    inbound_events_apply(channel=channel, events=[inbound("m1", text="helo")])
    edit = MessageEdit(wa_message_id="m1", text="hello", timestamp=T0 + timedelta(minutes=1))
    inbound_events_apply(channel=channel, events=[edit, edit])
    message = Message.objects.get(wa_message_id="m1")
    assert (message.text, message.previous_text) == ("hello", "helo")
    assert message.events.filter(kind="edited").count() == 1


def test_a_reaction_changes_and_an_older_one_is_ignored(channel):
    inbound_events_apply(channel=channel, events=[inbound("m1")])

    def react(emoji: str, at: datetime) -> Reaction:
        return Reaction(target_wa_message_id="m1", emoji=emoji, reactor_wa_id="4915550001", timestamp=at)

    inbound_events_apply(channel=channel, events=[react("👍", T0 + timedelta(seconds=2))])
    inbound_events_apply(channel=channel, events=[react("❤️", T0 + timedelta(seconds=5))])
    inbound_events_apply(channel=channel, events=[react("😮", T0 + timedelta(seconds=3))])
    assert list(MessageReaction.objects.values_list("emoji", flat=True)) == ["❤️"]


def test_a_reaction_to_an_unknown_message_is_ignored(channel):
    result = inbound_events_apply(
        channel=channel,
        events=[Reaction(target_wa_message_id="nope", emoji="👍", reactor_wa_id="x", timestamp=T0)],
    )
    assert result.ignored == 1
    assert not MessageReaction.objects.exists()


# ---------------------------------------------------------------- realtime


async def _drain(layer, listener: str) -> list[dict]:
    return await received_frames(layer, listener, quiet=1.0)


def test_it_pushes_message_created_and_chat_updated_after_commit(channel, django_capture_on_commit_callbacks):
    layer = get_channel_layer()
    assert layer is not None
    listener = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(workspace_group(channel.workspace_id), listener)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        inbound_events_apply(channel=channel, events=[inbound("m1")])
    chat = Chat.objects.get(channel=channel, wa_chat_id=CHAT_ID)
    async_to_sync(layer.group_add)(chat_group(chat.pk), listener)
    for callback in callbacks:  # nothing is pushed before commit
        callback()
    received = async_to_sync(_drain)(layer, listener)
    message = Message.objects.get(wa_message_id="m1")
    assert {"type": "message.created", "message_id": message.pk, "chat_id": chat.pk} in received
    assert {"type": "chat.updated", "chat_id": chat.pk} in received
    async_to_sync(layer.group_discard)(workspace_group(channel.workspace_id), listener)
    async_to_sync(layer.group_discard)(chat_group(chat.pk), listener)


def test_a_reaction_marks_its_message_updated_so_a_resyncing_page_gets_it(channel):
    inbound_events_apply(channel=channel, events=[inbound("m1")])
    before = Message.objects.get(wa_message_id="m1").updated_at
    reaction = Reaction(target_wa_message_id="m1", emoji="👍", reactor_wa_id="4915550001", timestamp=T0)
    inbound_events_apply(channel=channel, events=[reaction])
    assert Message.objects.get(wa_message_id="m1").updated_at > before


def test_merging_an_echo_tells_open_pages_to_drop_its_bubble(
    channel, pending_outbound, django_capture_on_commit_callbacks, monkeypatch
):
    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr(
        "tenants.realtime.send_event_rollback_unsafe", lambda group, event: sent.append((group, event))
    )
    inbound_events_apply(channel=channel, events=[inbound("w1", from_me=True, text="ours", at=T0)])
    echo_id = Message.objects.get(wa_message_id="w1").pk
    with django_capture_on_commit_callbacks(execute=True):
        message_record_provider_id(message=pending_outbound, wa_message_id="w1", sent_at=T0)
    removed = [event for _, event in sent if event["type"] == "message.removed"]
    assert removed == [
        {"type": "message.removed", "message_id": echo_id, "chat_id": pending_outbound.chat_id}
    ]
