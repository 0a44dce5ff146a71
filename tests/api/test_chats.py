"""/api/v1/chats/: list with filters, read one, assign and change status, mark read, start a chat."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from inbox.models import Chat
from tests.api.conftest import assert_error, data_of
from tests.factories import ChannelFactory, ChatFactory, MessageFactory, UserFactory

pytestmark = pytest.mark.django_db


def ids(response):
    return [c["id"] for c in data_of(response)]


def test_chats_list_newest_first(bob_api, team):
    older = ChatFactory(channel=team.channel_a, last_message_at=timezone.now() - timedelta(days=1))
    never = ChatFactory(channel=team.channel_a, last_message_at=None)
    assert ids(bob_api.get("/chats/")) == [team.chat_a.pk, older.pk, never.pk]


def test_chats_filter_by_status_assignee_channel_text_and_update_time(bob_api, team):
    second_channel = ChannelFactory(workspace=team.workspace_a)
    mine = ChatFactory(channel=team.channel_a, assignee=team.bob, status="pending")
    alices = ChatFactory(channel=second_channel, assignee=team.alice, contact_name="Zed Zebra")
    MessageFactory(chat=team.chat_a, text="where is my parcel?")

    assert ids(bob_api.get("/chats/", {"status": "pending"})) == [mine.pk]
    assert ids(bob_api.get("/chats/", {"assignee": "me"})) == [mine.pk]
    assert set(ids(bob_api.get("/chats/", {"assignee": "none"}))) == {team.chat_a.pk}
    assert ids(bob_api.get("/chats/", {"assignee": str(team.alice.pk)})) == [alices.pk]
    assert ids(bob_api.get("/chats/", {"channel": str(second_channel.pk)})) == [alices.pk]
    assert ids(bob_api.get("/chats/", {"q": "zebra"})) == [alices.pk]
    assert ids(bob_api.get("/chats/", {"q": "parcel"})) == [team.chat_a.pk]
    Chat.objects.filter(pk=mine.pk).update(updated_at=timezone.now() + timedelta(hours=1))
    since = (timezone.now() + timedelta(minutes=30)).isoformat()
    assert ids(bob_api.get("/chats/", {"updated_since": since})) == [mine.pk]


def test_chat_filters_are_validated(bob_api):
    error = assert_error(
        bob_api.get("/chats/", {"status": "archived", "assignee": "somebody", "updated_since": "yesterday"}),
        400,
    )
    assert {"status", "assignee", "updated_since"} <= set(error["fields"])


def test_charlie_sees_none_of_workspace_a_chats(charlie_api, team):
    assert ids(charlie_api.get("/chats/")) == [team.chat_b.pk]
    assert_error(charlie_api.get(f"/chats/{team.chat_a.pk}/"), 404)
    assert_error(charlie_api.patch(f"/chats/{team.chat_a.pk}/", {"status": "resolved"}), 404)
    assert_error(charlie_api.post(f"/chats/{team.chat_a.pk}/read/"), 404)
    assert_error(
        charlie_api.post("/chats/", {"channel": str(team.channel_a.pk), "phone": "+4915112345678"}), 404
    )
    assert Chat.objects.get(pk=team.chat_a.pk).status == "open"


def test_a_chat_reads_with_its_assignee(bob_api, team):
    Chat.objects.filter(pk=team.chat_a.pk).update(assignee=team.bob)
    chat = data_of(bob_api.get(f"/chats/{team.chat_a.pk}/"))
    assert chat["assignee"] == {"id": team.bob.pk, "email": "bob@example.com"}
    assert chat["channel_id"] == str(team.channel_a.pk)


def test_an_agent_resolves_a_chat(bob_api, team):
    assert data_of(bob_api.patch(f"/chats/{team.chat_a.pk}/", {"status": "resolved"}))["status"] == "resolved"


def test_patching_a_chat_validates_status_and_assignee(bob_api, team):
    error = assert_error(
        bob_api.patch(f"/chats/{team.chat_a.pk}/", {"status": "done", "assignee": "bob"}), 400
    )
    assert {"status", "assignee"} <= set(error["fields"])


def test_an_agent_assigns_a_chat_to_themselves_and_lets_it_go(bob_api, team):
    assert (
        data_of(bob_api.patch(f"/chats/{team.chat_a.pk}/", {"assignee": team.bob.pk}))["assignee"]["id"]
        == team.bob.pk
    )
    assert data_of(bob_api.patch(f"/chats/{team.chat_a.pk}/", {"assignee": None}))["assignee"] is None


def test_an_agent_cannot_assign_someone_else_or_unassign_them(bob_api, team):
    assert_error(bob_api.patch(f"/chats/{team.chat_a.pk}/", {"assignee": team.alice.pk}), 403)
    Chat.objects.filter(pk=team.chat_a.pk).update(assignee=team.alice)
    assert_error(bob_api.patch(f"/chats/{team.chat_a.pk}/", {"assignee": None}), 403)
    assert Chat.objects.get(pk=team.chat_a.pk).assignee == team.alice


def test_an_admin_assigns_anyone_in_the_workspace(alice_api, team):
    chat = data_of(alice_api.patch(f"/chats/{team.chat_a.pk}/", {"assignee": team.bob.pk}))
    assert chat["assignee"]["id"] == team.bob.pk


def test_the_assignee_must_be_a_member_of_the_chats_workspace(alice_api, team):
    outsider = UserFactory()
    for user_id in (team.charlie.pk, outsider.pk, 987654321):
        error = assert_error(alice_api.patch(f"/chats/{team.chat_a.pk}/", {"assignee": user_id}), 400)
        assert "assignee" in error["fields"]
    assert Chat.objects.get(pk=team.chat_a.pk).assignee is None


def test_marking_a_chat_read_clears_its_unread_count(bob_api, team):
    Chat.objects.filter(pk=team.chat_a.pk).update(unread_count=3)
    assert data_of(bob_api.post(f"/chats/{team.chat_a.pk}/read/"))["unread_count"] == 0


def test_an_agent_starts_a_chat_with_a_phone_number(bob_api, team):
    chat = data_of(
        bob_api.post("/chats/", {"channel": str(team.channel_a.pk), "phone": "+49 151 2345 6789"}), 201
    )
    assert chat["wa_chat_id"] == "4915123456789@s.whatsapp.net"
    assert chat["assignee"]["id"] == team.bob.pk
    # Starting it again returns the same chat.
    again = data_of(
        bob_api.post("/chats/", {"channel": str(team.channel_a.pk), "phone": "+4915123456789"}), 201
    )
    assert again["id"] == chat["id"]


def test_starting_a_chat_validates_the_phone_number(bob_api, team):
    error = assert_error(bob_api.post("/chats/", {"channel": str(team.channel_a.pk), "phone": "12"}), 400)
    assert "phone" in error["fields"]
    error = assert_error(bob_api.post("/chats/", {"phone": "+4915123456789"}), 400)
    assert "channel" in error["fields"]
