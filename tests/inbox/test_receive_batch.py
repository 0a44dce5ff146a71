"""inbound_messages_apply_batch: a batch of customers' messages ends exactly where applying them one by
one through inbound_events_apply ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from channels_app.models import Channel
from channels_app.providers.base import InboundMessage, MediaInfo, StatusUpdate
from inbox.models import Chat, Contact, DeferredStatus, Message, MessageEvent
from inbox.services import inbound_events_apply
from inbox.services.receive_batch import (
    ReceivedMessage,
    inbound_messages_apply_batch,
    inbound_messages_batchable,
)
from tests.factories import ChannelFactory, ChatFactory, MessageFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
RECEIVED_AT = T0 + timedelta(seconds=3)
ANA = "4915550001@s.whatsapp.net"
BEN = "4915550002@s.whatsapp.net"
GROUP = "120363000000000001@g.us"


def customer(wa_id: str, chat: str, at: datetime, text: str = "", **kw) -> InboundMessage:
    return InboundMessage(
        wa_message_id=wa_id,
        wa_chat_id=chat,
        from_me=False,
        type=kw.pop("type", "text"),
        timestamp=at,
        text=text or f"text of {wa_id}",
        contact_name=kw.pop("contact_name", "Ana"),
        contact_phone=chat.split("@")[0],
        **kw,
    )


def scenario() -> list[InboundMessage]:
    """New chats and an old one, an older message arriving after a newer one, repeats inside the batch and
    of an id stored before, replies to a stored message and to one earlier in the batch, a renamed
    customer, a photo, a group."""
    return [
        customer("in.1", ANA, T0 + timedelta(minutes=2)),
        customer("in.2", ANA, T0 + timedelta(minutes=1)),  # older: the preview stays in.1
        customer(
            "in.3",
            BEN,
            T0 + timedelta(minutes=3),
            text="look",
            type="image",
            contact_name="Ben",
            media=MediaInfo(media_id="media-3", mime_type="image/jpeg", caption="look"),
        ),
        customer("in.1", ANA, T0 + timedelta(minutes=2)),  # the provider repeated it
        customer("in.4", ANA, T0 + timedelta(minutes=4), reply_to_wa_id="in.1", contact_name="Ana Maria"),
        customer("in.5", BEN, T0 + timedelta(minutes=5), reply_to_wa_id="stored.1", contact_name="Ben"),
        customer("stored.1", BEN, T0 - timedelta(days=1), contact_name="Ben"),  # stored before: a duplicate
        customer(
            "in.6", GROUP, T0 + timedelta(minutes=6), is_group=True, contact_name="Team", author_wa_id="491"
        ),
    ]


def existing_state(channel: Channel) -> None:
    """Ben's chat is known, resolved and archived; a status for in.3 was parked before it arrived."""
    chat = ChatFactory(
        channel=channel,
        wa_chat_id=BEN,
        contact_name="Ben",
        status=Chat.Status.RESOLVED,
        archived=True,
        unread_count=2,
        last_message_at=T0 - timedelta(days=1),
        last_message_preview="yesterday",
        window_expires_at=T0 - timedelta(hours=1),
    )
    MessageFactory(chat=chat, wa_message_id="stored.1", text="yesterday", sort_at=T0 - timedelta(days=1))
    DeferredStatus.objects.create(channel=channel, wa_message_id="in.3", status="read", occurred_at=T0)


def snapshot(channel: Channel) -> dict:
    chats = {
        chat.wa_chat_id: (
            chat.contact_name,
            chat.contact_phone,
            chat.is_group,
            chat.unread_count,
            chat.last_message_preview,
            chat.last_message_at,
            chat.status,
            chat.archived,
            chat.window_expires_at,
            chat.contact.name if chat.contact else None,
        )
        for chat in Chat.objects.filter(channel=channel).select_related("contact")
    }
    messages = {
        message.wa_message_id: (
            message.chat.wa_chat_id,
            message.direction,
            message.type,
            message.text,
            message.status,
            message.reply_to.wa_message_id if message.reply_to else None,
            message.media_status,
            message.author_wa_id,
            message.sort_at,
        )
        for message in Message.objects.filter(channel=channel).select_related("chat", "reply_to")
    }
    timeline = sorted(
        (event.message.wa_message_id, event.kind, event.occurred_at)
        for event in MessageEvent.objects.filter(message__channel=channel).select_related("message")
        if event.kind != MessageEvent.Kind.PUSHED
    )
    pushed = sorted(
        str(wa_message_id)
        for wa_message_id in MessageEvent.objects.filter(
            message__channel=channel, kind=MessageEvent.Kind.PUSHED
        ).values_list("message__wa_message_id", flat=True)
    )
    return {
        "chats": chats,
        "messages": messages,
        "timeline": timeline,
        "pushed": pushed,
        "contacts": sorted(Contact.objects.filter(channel=channel).values_list("wa_id", "name")),
        "deferred": DeferredStatus.objects.filter(channel=channel).count(),
    }


@pytest.fixture
def two_meta_numbers(team) -> tuple[Channel, Channel]:
    one = ChannelFactory(workspace=team.workspace_a, provider=Channel.Provider.META)
    other = ChannelFactory(workspace=team.workspace_a, provider=Channel.Provider.META)
    return one, other  # type: ignore[return-value]


def test_a_batch_ends_where_one_by_one_ends(two_meta_numbers, django_capture_on_commit_callbacks):
    one_by_one, batched = two_meta_numbers
    for channel in two_meta_numbers:
        existing_state(channel)
    for message in scenario():
        with django_capture_on_commit_callbacks(execute=True):
            inbound_events_apply(
                channel=one_by_one, events=[message], received_at=RECEIVED_AT, webhook_event_id=7
            )
    with django_capture_on_commit_callbacks(execute=True):
        result = inbound_messages_apply_batch(
            channel=batched,
            received=[ReceivedMessage(message, RECEIVED_AT, 7) for message in scenario()],
        )

    expected = snapshot(one_by_one)
    assert snapshot(batched) == expected
    assert (result.messages_created, result.messages_duplicate) == (6, 2)
    ana = expected["chats"][ANA]
    assert ana[0] == "Ana Maria" and ana[3] == 3 and ana[4] == "text of in.4"
    ben = expected["chats"][BEN]
    assert (ben[3], ben[6], ben[7]) == (4, Chat.Status.OPEN, False)  # 2 + 2 unread, reopened, back
    assert ben[8] == T0 + timedelta(minutes=5, hours=24)  # Meta's window from the newest message
    assert expected["messages"]["in.4"][5] == "in.1" and expected["messages"]["in.5"][5] == "stored.1"
    # The download ran after commit (and gave up: these numbers have no API token).
    assert expected["messages"]["in.3"][6] == Message.MediaStatus.FAILED
    assert expected["pushed"] == ["in.1", "in.2", "in.3", "in.4", "in.5", "in.6"]
    assert expected["deferred"] == 0


def test_a_batch_runs_a_fixed_number_of_statements_whatever_its_size(team):
    channel = team.channel_a
    counts = []
    for size, start in ((10, 0), (40, 100)):
        received = [
            ReceivedMessage(
                customer(f"many.{n}", f"49155{n % 7:05d}@s.whatsapp.net", T0 + timedelta(seconds=n)), T0
            )
            for n in range(start, start + size)
        ]
        with CaptureQueriesContext(connection) as queries:
            inbound_messages_apply_batch(channel=channel, received=received)
        counts.append(len(queries))
    assert Message.objects.filter(channel=channel, wa_message_id__startswith="many.").count() == 50
    # The first batch also creates the seven chats and their contacts; the second finds them.
    assert counts[1] <= counts[0] <= 20


def test_only_plain_customer_messages_take_the_batch_path():
    plain = customer("a", ANA, T0)
    echo = InboundMessage(wa_message_id="b", wa_chat_id=ANA, from_me=True, type="text", timestamp=T0)
    assert inbound_messages_batchable([plain, plain])
    assert not inbound_messages_batchable([])
    assert not inbound_messages_batchable([plain, echo])
    assert not inbound_messages_batchable(
        [plain, StatusUpdate(wa_message_id="a", status="read", timestamp=T0)]
    )
    assert not inbound_messages_batchable([customer("", ANA, T0)])


def test_a_repeat_with_a_new_profile_name_renames_the_chat_and_pushes_its_row(
    team, django_capture_on_commit_callbacks
):
    channel = team.channel_a
    first = customer("rename.1", ANA, T0, contact_name="Ana")
    inbound_messages_apply_batch(channel=channel, received=[ReceivedMessage(first, RECEIVED_AT)])
    renamed = customer("rename.1", ANA, T0, contact_name="Ana Maria")
    with django_capture_on_commit_callbacks() as callbacks:
        result = inbound_messages_apply_batch(
            channel=channel, received=[ReceivedMessage(renamed, RECEIVED_AT)]
        )
    chat = Chat.objects.select_related("contact").get(channel=channel, wa_chat_id=ANA)
    assert (result.messages_created, result.messages_duplicate) == (0, 1)
    assert chat.contact_name == "Ana Maria" and chat.contact is not None and chat.contact.name == "Ana Maria"
    assert len(callbacks) == 1  # the chat row's push


@pytest.mark.django_db(transaction=True)
def test_a_batch_is_pushed_to_its_workspace_as_one_messages_created_then_one_chats_updated(team):
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from tenants.realtime import _push_loop, workspace_group
    from tests.layer import received_frames

    layer = get_channel_layer()
    listener = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(workspace_group(team.channel_a.workspace_id), listener)
    received = [
        ReceivedMessage(customer(f"push.{n}", f"49155500{n:02d}@s.whatsapp.net", T0), RECEIVED_AT)
        for n in range(4)
    ]
    inbound_messages_apply_batch(channel=team.channel_a, received=received)
    _push_loop.flush()

    pushed = async_to_sync(received_frames)(layer, listener)
    assert [f["type"] for f in pushed] == ["messages.created", "chats.updated"]
    messages = Message.objects.filter(channel=team.channel_a, wa_message_id__startswith="push.")
    assert sorted(map(tuple, pushed[0]["items"])) == sorted((m.chat_id, m.pk) for m in messages)
