"""Agent actions on a chat: assign, resolve/reopen/pending, mark read, start a chat with a number.

Every function is an inner service: it expects the caller (a view, a consumer, a task) to own the
transaction, writes with ``update_fields``, records an audit entry for actions other people care
about, and pushes realtime events after commit through ``inbox.realtime``.
"""

from __future__ import annotations

import re
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from channels_app.models import Channel
from inbox.errors import InboxError
from inbox.models import Chat
from inbox.realtime import push_chat_updated
from tenants.models import Membership
from tenants.services import audit_record

# E.164 allows at most 15 digits; fewer than 6 is never a reachable WhatsApp number.
_PHONE_MIN_DIGITS = 6
_PHONE_MAX_DIGITS = 15


def chat_assign(*, chat: Chat, agent: Any | None, acting_user: Any) -> Chat:
    """Give the chat to ``agent`` (a member of the chat's workspace), or to nobody with ``None``."""
    if (
        agent is not None
        and not Membership.objects.filter(workspace_id=chat.workspace_id, user=agent).exists()
    ):
        raise InboxError("Only people in this workspace can be assigned a chat.")
    previous_id = chat.assignee_id
    new_id = agent.pk if agent is not None else None
    if previous_id == new_id:
        return chat
    with transaction.atomic(savepoint=False):
        chat.assignee = agent
        chat.save(update_fields=["assignee", "updated_at"])
        audit_record(
            action="chat.assigned" if agent is not None else "chat.unassigned",
            workspace=chat.workspace,
            actor=acting_user,
            target=chat,
            data={"from": previous_id, "to": new_id},
        )
        push_chat_updated(chat)
    return chat


def chats_unassign_member(*, workspace_id: Any, user_id: Any, acting_user: Any) -> int:
    """Someone left the workspace: their open work goes back to the team (unassigned), each chat pushed so
    other agents see it at once. Returns how many chats were theirs."""
    chats = list(
        Chat.objects.filter(workspace_id=workspace_id, assignee_id=user_id).select_related("workspace")
    )
    if not chats:
        return 0
    with transaction.atomic(savepoint=False):
        Chat.objects.filter(pk__in=[chat.pk for chat in chats], assignee_id=user_id).update(
            assignee=None, updated_at=timezone.now()
        )
        audit_record(
            action="chats.unassigned",
            workspace=chats[0].workspace,
            actor=acting_user,
            target=None,
            data={"reason": "member removed", "user_id": user_id, "chats": len(chats)},
        )
        for chat in chats:
            chat.assignee = None
            push_chat_updated(chat)
    return len(chats)


def chat_set_status(*, chat: Chat, status: str, acting_user: Any) -> Chat:
    """Resolve, reopen or park (pending) a chat."""
    if status not in Chat.Status.values:
        raise InboxError(f"Unknown chat status {status!r}.")
    previous = chat.status
    if previous == status:
        return chat
    with transaction.atomic(savepoint=False):
        chat.status = status
        chat.save(update_fields=["status", "updated_at"])
        audit_record(
            action=f"chat.{status}" if status != Chat.Status.OPEN else "chat.reopened",
            workspace=chat.workspace,
            actor=acting_user,
            target=chat,
            data={"from": previous, "to": status},
        )
        push_chat_updated(chat)
    return chat


def chat_mark_read(*, chat: Chat, user: Any) -> Chat:
    """The chat was looked at: clear its unread badge for everyone (the badge is per chat, not per agent)."""
    if chat.unread_count == 0 and chat.last_read_at is not None:
        # Nothing changes: skip the write and, more importantly, the push to every agent's list.
        return chat
    with transaction.atomic(savepoint=False):
        chat.unread_count = 0
        chat.last_read_at = timezone.now()
        chat.save(update_fields=["unread_count", "last_read_at", "updated_at"])
        push_chat_updated(chat)
    return chat


def normalize_phone(phone: str) -> str:
    """Digits only, country code first: '+49 (151) 234-567' → '49151234567'."""
    digits = re.sub(r"\D", "", phone or "")
    if digits.startswith("00"):
        digits = digits[2:]
    if not (_PHONE_MIN_DIGITS <= len(digits) <= _PHONE_MAX_DIGITS):
        raise InboxError("Enter the number with its country code, e.g. +49 151 2345678.")
    return digits


def wa_chat_id_for_phone(*, channel: Channel, digits: str) -> str:
    # Meta addresses a customer by the bare wa_id; Whapi (and the sandbox, which mimics it) by a JID.
    if channel.provider == Channel.Provider.META:
        return digits
    return f"{digits}@s.whatsapp.net"


def chat_start(*, channel: Channel, phone: str, acting_user: Any) -> Chat:
    """The chat with ``phone`` on ``channel``: the existing one, reopened if resolved, or a new one.

    The new chat is open, assigned to whoever started it, and dated now so it sits at the top of the list.
    """
    digits = normalize_phone(phone)
    wa_chat_id = wa_chat_id_for_phone(channel=channel, digits=digits)
    with transaction.atomic(savepoint=False):
        chat = Chat.objects.filter(channel=channel, wa_chat_id=wa_chat_id).first()
        if chat is not None:
            if chat.status == Chat.Status.RESOLVED:
                chat_set_status(chat=chat, status=Chat.Status.OPEN, acting_user=acting_user)
            return chat
        try:
            # A savepoint only around the insert: a concurrent start of the same chat must not
            # poison the caller's transaction.
            with transaction.atomic():
                chat = Chat.objects.create(
                    workspace_id=channel.workspace_id,
                    channel=channel,
                    wa_chat_id=wa_chat_id,
                    contact_phone=f"+{digits}",
                    assignee=acting_user if getattr(acting_user, "is_authenticated", False) else None,
                    last_message_at=timezone.now(),
                )
        except IntegrityError:
            return Chat.objects.get(channel=channel, wa_chat_id=wa_chat_id)
        audit_record(
            action="chat.started",
            workspace=channel.workspace,
            actor=acting_user,
            target=chat,
            data={"channel_id": str(channel.pk), "phone": f"+{digits}"},
        )
        push_chat_updated(chat)
    return chat
