"""Agent actions on chats: assign, status, mark read, start; each audited and pushed after commit."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from django.db import transaction

from channels_app.models import Channel
from inbox.errors import InboxError
from inbox.models import Chat
from inbox.services import chat_assign, chat_mark_read, chat_set_status, chat_start
from tenants.models import AuditLog
from tests.conftest import Team
from tests.factories import ChannelFactory


@pytest.fixture
def pushes() -> Any:
    with mock.patch("tenants.realtime.send_event_rollback_unsafe") as send:
        yield send


def pushed_events(send: Any) -> list[tuple[str, str]]:
    return [(call.args[0], call.args[1]["type"]) for call in send.call_args_list]


def test_assigning_a_chat_is_audited_and_pushed_to_the_workspace_after_commit(
    team: Team, pushes: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks, transaction.atomic():
        chat_assign(chat=team.chat_a, agent=team.bob, acting_user=team.alice)
        assert pushes.call_count == 0
    for callback in callbacks:
        callback()
    assert pushed_events(pushes) == [(f"ws.{team.workspace_a.pk}", "chat.updated")]
    team.chat_a.refresh_from_db()
    assert team.chat_a.assignee == team.bob
    entry = AuditLog.objects.get(action="chat.assigned")
    assert entry.actor == team.alice and entry.data == {"from": None, "to": team.bob.pk}


def test_a_rolled_back_assignment_pushes_nothing(
    team: Team, pushes: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        chat_assign(chat=team.chat_a, agent=team.bob, acting_user=team.alice)
        raise RuntimeError("boom")
    assert callbacks == [] and pushes.call_count == 0


def test_unassigning_is_audited_as_such(team: Team, pushes: Any) -> None:
    chat_assign(chat=team.chat_a, agent=team.bob, acting_user=team.alice)
    chat_assign(chat=team.chat_a, agent=None, acting_user=team.alice)
    assert AuditLog.objects.filter(action="chat.unassigned").count() == 1


def test_assigning_to_the_same_agent_twice_changes_nothing(team: Team, pushes: Any) -> None:
    chat_assign(chat=team.chat_a, agent=team.bob, acting_user=team.alice)
    chat_assign(chat=team.chat_a, agent=team.bob, acting_user=team.alice)
    assert AuditLog.objects.filter(action="chat.assigned").count() == 1


def test_someone_from_another_workspace_cannot_be_assigned(team: Team, pushes: Any) -> None:
    with pytest.raises(InboxError):
        chat_assign(chat=team.chat_a, agent=team.charlie, acting_user=team.alice)
    team.chat_a.refresh_from_db()
    assert team.chat_a.assignee is None


@pytest.mark.parametrize(("status", "action"), [("resolved", "chat.resolved"), ("pending", "chat.pending")])
def test_resolving_and_parking_a_chat_are_audited(team: Team, pushes: Any, status: str, action: str) -> None:
    chat_set_status(chat=team.chat_a, status=status, acting_user=team.bob)
    team.chat_a.refresh_from_db()
    assert team.chat_a.status == status
    assert AuditLog.objects.filter(action=action, actor=team.bob).exists()


def test_reopening_a_resolved_chat_is_audited_as_reopened(team: Team, pushes: Any) -> None:
    chat_set_status(chat=team.chat_a, status=Chat.Status.RESOLVED, acting_user=team.bob)
    chat_set_status(chat=team.chat_a, status=Chat.Status.OPEN, acting_user=team.bob)
    assert AuditLog.objects.filter(action="chat.reopened").exists()


def test_an_unknown_status_is_refused(team: Team) -> None:
    with pytest.raises(InboxError):
        chat_set_status(chat=team.chat_a, status="archived", acting_user=team.bob)


def test_marking_read_clears_the_badge_and_pushes_once(
    team: Team, pushes: Any, django_capture_on_commit_callbacks: Any
) -> None:
    Chat.objects.filter(pk=team.chat_a.pk).update(unread_count=4)
    team.chat_a.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        chat_mark_read(chat=team.chat_a, user=team.bob)
        chat_mark_read(chat=team.chat_a, user=team.bob)
    team.chat_a.refresh_from_db()
    assert team.chat_a.unread_count == 0 and team.chat_a.last_read_at is not None
    assert pushes.call_count == 1


def test_starting_a_chat_creates_it_assigned_to_the_starter(team: Team, pushes: Any) -> None:
    chat = chat_start(channel=team.channel_a, phone="+49 (151) 234-5678", acting_user=team.bob)
    assert chat.wa_chat_id == "491512345678@s.whatsapp.net"
    assert chat.contact_phone == "+491512345678"
    assert chat.assignee == team.bob and chat.status == Chat.Status.OPEN and chat.last_message_at is not None
    assert AuditLog.objects.filter(action="chat.started", target_id=str(chat.pk)).exists()


def test_a_meta_chat_is_addressed_by_the_bare_number(team: Team, pushes: Any) -> None:
    meta = ChannelFactory(
        workspace=team.workspace_a, provider=Channel.Provider.META, meta_phone_number_id="99"
    )
    assert (
        chat_start(channel=meta, phone="0049 151 2345678", acting_user=team.bob).wa_chat_id == "491512345678"
    )


def test_starting_an_existing_chat_returns_it_and_reopens_it(team: Team, pushes: Any) -> None:
    first = chat_start(channel=team.channel_a, phone="+4915123456789", acting_user=team.bob)
    chat_set_status(chat=first, status=Chat.Status.RESOLVED, acting_user=team.bob)
    again = chat_start(channel=team.channel_a, phone="4915123456789", acting_user=team.alice)
    assert again.pk == first.pk
    again.refresh_from_db()
    assert again.status == Chat.Status.OPEN
    assert Chat.objects.filter(channel=team.channel_a, contact_phone="+4915123456789").count() == 1


@pytest.mark.parametrize("phone", ["", "12345", "abc", "+1234567890123456"])
def test_a_number_that_cannot_be_a_whatsapp_number_is_refused(team: Team, phone: str) -> None:
    with pytest.raises(InboxError):
        chat_start(channel=team.channel_a, phone=phone, acting_user=team.bob)
