"""The inbox websocket: session auth, membership per group, each event type, and charlie's isolation.

The full ASGI application (origin check, session auth, URL router) runs in-process over the Redis
channel layer; services push after commit exactly as they do in production.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.utils import timezone

from channels_app.models import Channel
from config.asgi import application
from inbox.models import Chat, Message
from inbox.realtime import push_message_created, push_message_updated, push_messages_updated
from inbox.services import chat_assign, chat_set_status
from tests.conftest import Team
from tests.factories import MembershipFactory, MessageFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 3


def session_cookie(user: Any, workspace_id: Any = None) -> bytes:
    client = Client()
    client.force_login(user)
    if workspace_id is not None:
        session = client.session
        session["workspace_id"] = str(workspace_id)
        session.save()
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def communicator(cookie: bytes | None) -> WebsocketCommunicator:
    headers = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
    if cookie:
        headers.append((b"cookie", cookie))
    return WebsocketCommunicator(application, "/ws/inbox/", headers=headers)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async_to_sync(scenario)()


def db(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    return database_sync_to_async(fn)


async def connected(cookie: bytes) -> WebsocketCommunicator:
    socket = communicator(cookie)
    ok, code = await socket.connect(timeout=TIMEOUT)
    assert ok, code
    return socket


async def open_chat(socket: WebsocketCommunicator, chat_id: Any, **extra: Any) -> None:
    await socket.send_json_to({"action": "open_chat", "chat_id": chat_id, **extra})
    # The consumer handles messages in order: a sync without `since` sends nothing back, so a
    # round trip of a harmless message proves the join happened before we push events.
    await socket.send_json_to({"action": "filters", "view": extra.get("view", "all"), "status": "open"})
    assert await socket.receive_nothing(timeout=0.2)


# ---------------------------------------------------------------- authentication


def test_an_anonymous_socket_is_refused() -> None:
    async def scenario() -> None:
        socket = communicator(None)
        ok, _ = await socket.connect(timeout=TIMEOUT)
        assert not ok

    run(scenario)


def test_a_user_in_several_workspaces_without_one_chosen_is_refused(team: Team) -> None:
    MembershipFactory(workspace=team.workspace_b, user=team.alice)
    cookie = session_cookie(team.alice)

    async def scenario() -> None:
        socket = communicator(cookie)
        ok, _ = await socket.connect(timeout=TIMEOUT)
        assert not ok

    run(scenario)


def test_a_member_of_a_suspended_workspace_is_refused(team: Team) -> None:
    cookie = session_cookie(team.bob)
    team.workspace_a.status = "suspended"
    team.workspace_a.save()

    async def scenario() -> None:
        socket = communicator(cookie)
        ok, _ = await socket.connect(timeout=TIMEOUT)
        assert not ok

    run(scenario)


def test_a_signed_in_member_connects(team: Team) -> None:
    cookie = session_cookie(team.bob)

    async def scenario() -> None:
        socket = await connected(cookie)
        await socket.disconnect()

    run(scenario)


# ---------------------------------------------------------------- events


def test_an_assignment_pushes_the_chat_row_and_the_counts_to_the_workspace(team: Team) -> None:
    cookie = session_cookie(team.bob)

    async def scenario() -> None:
        socket = await connected(cookie)
        await db(chat_assign)(chat=team.chat_a, agent=team.alice, acting_user=team.alice)
        frame = await socket.receive_from(timeout=TIMEOUT)
        assert 'hx-swap-oob="beforeend:#chat-list-items"' in frame
        assert f'data-chat-id="{team.chat_a.pk}"' in frame
        assert "alice@example.com" in frame
        assert 'id="chat-filters"' in frame and 'hx-swap-oob="true"' in frame
        assert 'id="sync-token"' in frame
        await socket.disconnect()

    run(scenario)


def test_the_open_chat_also_gets_its_header_re_rendered(team: Team) -> None:
    cookie = session_cookie(team.bob)

    async def scenario() -> None:
        socket = await connected(cookie)
        await open_chat(socket, team.chat_a.pk)
        await db(chat_set_status)(chat=team.chat_a, status=Chat.Status.PENDING, acting_user=team.alice)
        frame = await socket.receive_from(timeout=TIMEOUT)
        assert '<header id="chat-header"' in frame and 'data-status="pending"' in frame
        await socket.disconnect()

    run(scenario)


def test_a_chat_that_leaves_the_shown_list_is_removed_from_it(team: Team) -> None:
    cookie = session_cookie(team.bob)

    async def scenario() -> None:
        socket = await connected(cookie)
        await db(chat_set_status)(chat=team.chat_a, status=Chat.Status.RESOLVED, acting_user=team.alice)
        frame = await socket.receive_from(timeout=TIMEOUT)
        assert f'<li id="chat-row-{team.chat_a.pk}" hx-swap-oob="delete">' in frame
        await socket.disconnect()

    run(scenario)


def test_mine_view_follows_the_filters_the_page_reports(team: Team) -> None:
    cookie = session_cookie(team.bob)

    async def scenario() -> None:
        socket = await connected(cookie)
        await socket.send_json_to({"action": "filters", "view": "mine", "status": "open"})
        await db(chat_assign)(chat=team.chat_a, agent=team.alice, acting_user=team.alice)
        frame = await socket.receive_from(timeout=TIMEOUT)
        assert 'hx-swap-oob="delete"' in frame
        await db(chat_assign)(chat=team.chat_a, agent=team.bob, acting_user=team.alice)
        frame = await socket.receive_from(timeout=TIMEOUT)
        assert 'hx-swap-oob="beforeend:#chat-list-items"' in frame and ">You<" in frame
        await socket.disconnect()

    run(scenario)


def test_a_new_message_pushes_its_bubble_to_the_open_chat(team: Team) -> None:
    cookie = session_cookie(team.alice)

    async def scenario() -> None:
        socket = await connected(cookie)
        await open_chat(socket, team.chat_a.pk)

        def receive() -> Any:
            message = MessageFactory(chat=team.chat_a, text="Is my order on its way?")
            push_message_created(message, team.chat_a)
            return message

        message = await db(receive)()
        frames = [await socket.receive_from(timeout=TIMEOUT), await socket.receive_from(timeout=TIMEOUT)]
        bubble = next(f for f in frames if "data-message-id" in f)
        assert 'hx-swap-oob="beforeend:#message-list"' in bubble
        assert f'data-message-id="{message.pk}"' in bubble and "Is my order on its way?" in bubble
        assert any(f'data-chat-id="{team.chat_a.pk}"' in f and "chat-row" in f for f in frames)
        await socket.disconnect()

    run(scenario)


def test_a_batch_of_webhook_messages_pushes_each_bubble_and_every_touched_chat_row(team: Team) -> None:
    from datetime import UTC, datetime

    from channels_app.providers.base import InboundMessage
    from inbox.services.receive_batch import ReceivedMessage, inbound_messages_apply_batch

    cookie = session_cookie(team.alice)
    at = datetime(2026, 3, 1, tzinfo=UTC)

    def customer(wa_id: str, wa_chat_id: str) -> ReceivedMessage:
        message = InboundMessage(
            wa_message_id=wa_id, wa_chat_id=wa_chat_id, from_me=False, type="text", timestamp=at, text=wa_id
        )
        return ReceivedMessage(message, at)

    async def scenario() -> None:
        socket = await connected(cookie)
        await open_chat(socket, team.chat_a.pk)
        await db(inbound_messages_apply_batch)(
            channel=team.channel_a,
            received=[
                customer("batch.1", team.chat_a.wa_chat_id),
                customer("batch.2", "4915559999@s.whatsapp.net"),
            ],
        )
        new_chat = await db(Chat.objects.get)(channel=team.channel_a, wa_chat_id="4915559999@s.whatsapp.net")
        frames = [await socket.receive_from(timeout=TIMEOUT) for _ in range(3)]
        assert await socket.receive_nothing(timeout=0.3)
        assert sum("batch.1" in f and "data-message-id" in f for f in frames) == 1  # the open chat's bubble
        rows = [f for f in frames if "chat-row" in f]
        assert any(f'data-chat-id="{team.chat_a.pk}"' in f for f in rows)
        assert any(f'data-chat-id="{new_chat.pk}"' in f for f in rows)
        await socket.disconnect()

    run(scenario)


def test_a_removed_message_deletes_its_bubble_from_the_open_chat(team: Team) -> None:
    from inbox.realtime import push_message_removed

    cookie = session_cookie(team.alice)

    async def scenario() -> None:
        socket = await connected(cookie)
        await open_chat(socket, team.chat_a.pk)
        await db(lambda: push_message_removed(message_id=4242, chat_id=team.chat_a.pk))()
        frame = await socket.receive_from(timeout=TIMEOUT)
        assert frame == '<li id="msg-4242" hx-swap-oob="delete"></li>'
        await socket.disconnect()

    run(scenario)


def test_a_status_update_re_renders_the_bubble_with_its_new_tick(team: Team) -> None:
    message = MessageFactory(
        chat=team.chat_a, direction=Message.Direction.OUTBOUND, status=Message.Status.SENT
    )
    cookie = session_cookie(team.alice)

    async def scenario() -> None:
        socket = await connected(cookie)
        await open_chat(socket, team.chat_a.pk)

        def deliver() -> None:
            Message.objects.filter(pk=message.pk).update(status=Message.Status.DELIVERED)
            push_message_updated(Message.objects.get(pk=message.pk))

        await db(deliver)()
        frame = await socket.receive_from(timeout=TIMEOUT)
        assert f'data-message-id="{message.pk}"' in frame
        assert 'data-status="delivered"' in frame and "tick-delivered" in frame
        await socket.disconnect()

    run(scenario)


def test_a_batch_update_re_renders_only_the_bubbles_of_the_open_chat(team: Team) -> None:
    other = Chat.objects.create(
        workspace=team.workspace_a, channel=team.channel_a, wa_chat_id="batch-other@s.whatsapp.net"
    )
    shown = MessageFactory(chat=team.chat_a, direction=Message.Direction.OUTBOUND, status=Message.Status.SENT)
    hidden = MessageFactory(chat=other, direction=Message.Direction.OUTBOUND, status=Message.Status.SENT)
    cookie = session_cookie(team.alice)

    async def scenario() -> None:
        socket = await connected(cookie)
        await open_chat(socket, team.chat_a.pk)

        def deliver_both() -> None:
            Message.objects.filter(pk__in=[shown.pk, hidden.pk]).update(status=Message.Status.DELIVERED)
            push_messages_updated(
                list(Message.objects.select_related("channel").filter(pk__in=[shown.pk, hidden.pk]))
            )

        await db(deliver_both)()
        frame = await socket.receive_from(timeout=TIMEOUT)
        assert f'data-message-id="{shown.pk}"' in frame and 'data-status="delivered"' in frame
        assert f'data-message-id="{hidden.pk}"' not in frame
        assert await socket.receive_nothing(timeout=0.5)
        await socket.disconnect()

    run(scenario)


def test_message_events_of_a_chat_the_page_left_are_not_sent(team: Team) -> None:
    other = Chat.objects.create(
        workspace=team.workspace_a, channel=team.channel_a, wa_chat_id="other@s.whatsapp.net"
    )
    cookie = session_cookie(team.alice)

    async def scenario() -> None:
        socket = await connected(cookie)
        await open_chat(socket, team.chat_a.pk)
        await open_chat(socket, other.pk)

        def receive() -> None:
            push_message_updated(MessageFactory(chat=team.chat_a))

        await db(receive)()
        assert await socket.receive_nothing(timeout=0.5)
        await socket.disconnect()

    run(scenario)


def test_a_channel_status_change_updates_the_dot_and_raises_a_banner(team: Team) -> None:
    from channels_app.services import channel_status_set

    cookie = session_cookie(team.bob)

    async def scenario() -> None:
        socket = await connected(cookie)
        await db(channel_status_set)(
            channel=team.channel_a, status=Channel.Status.DISCONNECTED, detail="Token revoked"
        )
        frame = await socket.receive_from(timeout=TIMEOUT)
        assert f'id="channel-{team.channel_a.pk}"' in frame and 'data-channel-status="disconnected"' in frame
        assert 'id="channel-alerts"' in frame and "Token revoked" in frame
        await socket.disconnect()

    run(scenario)


def test_a_reconnecting_page_gets_what_changed_since_its_last_frame(team: Team) -> None:
    cookie = session_cookie(team.alice)
    token = (timezone.now() - timedelta(minutes=5)).isoformat()
    old = MessageFactory(chat=team.chat_a, text="old news")
    Message.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    missed = MessageFactory(chat=team.chat_a, text="sent while you were away")

    async def scenario() -> None:
        socket = await connected(cookie)
        await socket.send_json_to(
            {"action": "sync", "chat_id": team.chat_a.pk, "view": "all", "status": "open", "since": token}
        )
        frame = await socket.receive_from(timeout=TIMEOUT)
        assert f'data-message-id="{missed.pk}"' in frame
        assert f'data-message-id="{old.pk}"' not in frame
        assert '<div id="chat-list-region"' in frame and f'data-chat-id="{team.chat_a.pk}"' in frame
        assert 'id="sync-token"' in frame
        await socket.disconnect()

    run(scenario)


# ---------------------------------------------------------------- isolation


def test_charlie_never_receives_workspace_a_events(team: Team) -> None:
    charlie_cookie = session_cookie(team.charlie)
    alice_cookie = session_cookie(team.alice)

    async def scenario() -> None:
        charlie = await connected(charlie_cookie)
        alice = await connected(alice_cookie)
        # Charlie asks for workspace A's chat: the access check refuses, no group is joined.
        await open_chat(charlie, team.chat_a.pk)
        await open_chat(alice, team.chat_a.pk)

        def busy_workspace_a() -> None:
            chat_assign(chat=team.chat_a, agent=team.bob, acting_user=team.alice)
            message = MessageFactory(chat=team.chat_a, text="private to A")
            push_message_created(message, team.chat_a)
            push_message_updated(message)

        await db(busy_workspace_a)()
        assert "private to A" in "".join(
            [await alice.receive_from(timeout=TIMEOUT) for _ in range(2)]
            + [await alice.receive_from(timeout=TIMEOUT) for _ in range(2)]
        )
        assert await charlie.receive_nothing(timeout=0.5)
        # And a resync for A's chat gives charlie only workspace B's list.
        await charlie.send_json_to(
            {"action": "sync", "chat_id": team.chat_a.pk, "since": timezone.now().isoformat()}
        )
        frame = await charlie.receive_from(timeout=TIMEOUT)
        assert f'data-chat-id="{team.chat_b.pk}"' in frame
        assert f'data-chat-id="{team.chat_a.pk}"' not in frame and "private to A" not in frame
        await charlie.disconnect()
        await alice.disconnect()

    run(scenario)


def test_a_user_who_is_not_a_member_anywhere_is_refused(team: Team) -> None:
    cookie = session_cookie(UserFactory(username="dora@example.com"))

    async def scenario() -> None:
        ok, _ = await communicator(cookie).connect(timeout=TIMEOUT)
        assert not ok

    run(scenario)


def test_a_socket_from_another_origin_is_refused(team: Team) -> None:
    """Cross-site websocket hijacking: a page on another site cannot open the inbox socket with our cookie."""
    cookie = session_cookie(team.alice)

    async def scenario() -> None:
        headers = [(b"origin", b"https://evil.example"), (b"host", b"testserver"), (b"cookie", cookie)]
        socket = WebsocketCommunicator(application, "/ws/inbox/", headers=headers)
        ok, _ = await socket.connect(timeout=TIMEOUT)
        assert not ok
        same_site = communicator(cookie)
        ok, _ = await same_site.connect(timeout=TIMEOUT)
        assert ok
        await same_site.disconnect()

    run(scenario)
