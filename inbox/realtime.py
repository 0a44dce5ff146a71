"""What the inbox pushes to browsers, after commit. Consumers (inbox/consumers.py) render the fragments.

Event contract (Channels maps ``type`` "a.b" to the consumer method ``a_b``):
- workspace group ``ws.<workspace id>``: ``chat.updated`` {chat_id}, ``channel.status`` {channel_id, status}
- chat group ``chat.<chat id>``: ``message.created`` / ``message.updated`` {message_id, chat_id}
"""

from __future__ import annotations

from inbox.models import Chat, Message
from tenants.realtime import chat_group, send_event_on_commit, workspace_group


def push_chat_updated(chat: Chat) -> None:
    send_event_on_commit(workspace_group(chat.workspace_id), {"type": "chat.updated", "chat_id": chat.pk})


def push_message_created(message: Message, chat: Chat) -> None:
    send_event_on_commit(
        chat_group(chat.pk), {"type": "message.created", "message_id": message.pk, "chat_id": chat.pk}
    )
    push_chat_updated(chat)


def push_message_updated(message: Message) -> None:
    """Status ticks, edits, deletions and reactions: the bubble is re-rendered."""
    send_event_on_commit(
        chat_group(message.chat_id),
        {"type": "message.updated", "message_id": message.pk, "chat_id": message.chat_id},
    )
