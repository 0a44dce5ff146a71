"""Tenant-scoped lookups of chats and messages: another workspace's object is a 404, never a 403."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404

from inbox.models import Chat, Message
from tenants.access import member_workspace_ids


def chats_for_user(*, user: Any, workspace: Any | None = None) -> QuerySet[Chat]:
    qs = Chat.objects.filter(workspace_id__in=member_workspace_ids(user=user))
    if workspace is not None:
        qs = qs.filter(workspace=workspace)
    return qs


def access_chat(*, user: Any, chat_id: Any, workspace: Any | None = None, for_write: bool = False) -> Chat:
    """The chat, if the user is a member of its (active) workspace; else 404.

    ``for_write`` locks the row (``SELECT … FOR NO KEY UPDATE``): call it inside a transaction.
    """
    qs = chats_for_user(user=user, workspace=workspace).select_related("channel", "assignee")
    if for_write:
        qs = qs.select_for_update(no_key=True, of=("self",))
    try:
        return qs.get(pk=chat_id)
    except (Chat.DoesNotExist, ValueError, TypeError, ValidationError):
        raise Http404("No such chat") from None


def access_message(*, user: Any, message_id: Any, workspace: Any | None = None) -> Message:
    qs = Message.objects.filter(chat__workspace_id__in=member_workspace_ids(user=user)).select_related("chat")
    if workspace is not None:
        qs = qs.filter(chat__workspace=workspace)
    try:
        return qs.get(pk=message_id)
    except (Message.DoesNotExist, ValueError, TypeError, ValidationError):
        raise Http404("No such message") from None
