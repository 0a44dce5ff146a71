"""What the inbox pushes to browsers, after commit. Consumers (inbox/consumers.py) render the fragments.

Event contract (Channels maps ``type`` "a.b" to the consumer method ``a_b``):
- workspace group ``ws.<workspace id>``: ``chat.updated`` {chat_id}, ``chats.updated`` {chat_ids} (one
  push for the chats a batch of webhooks touched), ``channel.status`` {channel_id, status}
- workspace group, also: ``messages.created`` / ``messages.updated`` {items: [[chat_id, message_id], ...]}
  (one push for a batch of new or changed messages: a webhook drain's batch, an outbox drain's sends;
  pages render the bubbles of the chat they have open)
- chat group ``chat.<chat id>``: ``message.created`` / ``message.updated`` / ``message.removed``
  {message_id, chat_id}
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from inbox.models import Chat, Message, MessageEvent
from tenants.realtime import chat_group, send_event_on_commit, workspace_group


def push_chat_updated(chat: Chat) -> None:
    send_event_on_commit(workspace_group(chat.workspace_id), {"type": "chat.updated", "chat_id": chat.pk})
    _emit_to_subscribers(chat.workspace_id, "chat.updated", chat=chat)


def push_message_created(message: Message, chat: Chat) -> None:
    send_event_on_commit(
        chat_group(chat.pk), {"type": "message.created", "message_id": message.pk, "chat_id": chat.pk}
    )
    transaction.on_commit(lambda: _record_pushed(message.pk))
    _emit_to_subscribers(chat.workspace_id, "message.created", message=message)
    push_chat_updated(chat)


def _record_pushed(message_id: int) -> None:
    """The ``pushed`` step of the message's timeline: browsers were sent its bubble (after commit)."""
    # An echo merged away between the commit and now has no row left: its timeline moved already.
    with contextlib.suppress(IntegrityError), connection.cursor() as cursor:
        cursor.execute(  # plain SQL: once per inbound message, cheaper than the ORM's compiled INSERT
            "INSERT INTO inbox_messageevent (message_id, kind, detail, occurred_at) VALUES (%s, %s, '{}', %s)",
            [message_id, MessageEvent.Kind.PUSHED, timezone.now()],
        )


def push_messages_created(messages: list[Message], chats: list[Chat]) -> None:
    """``push_message_created`` for a batch: one ``messages.created`` per workspace for the bubbles, one
    ``chats.updated`` for the chats (in their state after the whole batch, pushed after the bubbles) and one
    insert for all the ``pushed`` timeline rows."""
    # One push per workspace, not one per message to its chat's group (each push is Redis round trips in
    # the worker: 28 % of its Python time under load); pages render the bubbles of the chat they have open.
    _push_messages_per_workspace(messages, "messages.created", "message.created")
    message_ids = [message.pk for message in messages]
    transaction.on_commit(lambda: _record_pushed_many(message_ids))
    push_chats_updated(chats)


def push_chats_updated(chats: list[Chat]) -> None:
    """``push_chat_updated`` for many chats: one push per workspace (a push costs Redis round trips)."""
    by_workspace: dict[object, list[int]] = {}
    for chat in chats:
        by_workspace.setdefault(chat.workspace_id, []).append(chat.pk)
        _emit_to_subscribers(chat.workspace_id, "chat.updated", chat=chat)
    for workspace_id, chat_ids in by_workspace.items():
        send_event_on_commit(workspace_group(workspace_id), {"type": "chats.updated", "chat_ids": chat_ids})


def _record_pushed_many(message_ids: list[int]) -> None:
    # Rows merged away (an echo) between the commit and now are skipped by the join.
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO inbox_messageevent (message_id, kind, detail, occurred_at) "
            "SELECT m.id, %s, '{}', %s FROM inbox_message m WHERE m.id = ANY(%s)",
            [MessageEvent.Kind.PUSHED, timezone.now(), message_ids],
        )


def push_message_removed(*, message_id: int, chat_id: int) -> None:
    """A message row that no longer exists (an echo merged into the message we sent): drop its bubble."""
    send_event_on_commit(
        chat_group(chat_id), {"type": "message.removed", "message_id": message_id, "chat_id": chat_id}
    )


def push_message_updated(message: Message) -> None:
    """Status ticks, edits, deletions and reactions: the bubble is re-rendered."""
    send_event_on_commit(
        chat_group(message.chat_id),
        {"type": "message.updated", "message_id": message.pk, "chat_id": message.chat_id},
    )
    _emit_to_subscribers(message.chat.workspace_id, "message.status", message=message)


def push_messages_updated(messages: list[Message]) -> None:
    """``push_message_updated`` for a batch: one push per workspace instead of one per message (a drain's
    batch holds at most one message per chat, so per-chat pushes were one group_send, several Redis round
    trips, per message: a quarter of a drain's CPU). Each message's channel should be loaded (the drain
    loads each number's once for its batch)."""
    _push_messages_per_workspace(messages, "messages.updated", "message.status")


def _push_messages_per_workspace(messages: list[Message], push_type: str, subscriber_event: str) -> None:
    """One ``push_type`` {items: [[chat_id, message_id], ...]} per workspace, and each message's event to
    integrators' subscriptions. Each message's channel should be loaded (for its workspace)."""
    by_workspace: dict[object, list[list[int]]] = {}
    for message in messages:
        workspace_id = message.channel.workspace_id
        by_workspace.setdefault(workspace_id, []).append([message.chat_id, message.pk])
        _emit_to_subscribers(workspace_id, subscriber_event, message=message)
    for workspace, items in by_workspace.items():
        send_event_on_commit(workspace_group(workspace), {"type": push_type, "items": items})


# workspace id → the event types its active subscriptions want, while a shared-lookup scope is open.
_wanted_by_workspace: ContextVar[dict[object, set[str]] | None] = ContextVar(
    "subscription_lookups", default=None
)


@contextmanager
def subscription_lookups_shared() -> Iterator[None]:
    """Look up each workspace's subscriptions once for the whole block instead of once per push.

    For one transaction that pushes many events (the drain recording a batch of sends, one webhook
    delivery's events). Without it every push runs a subscriptions query, which was half of the drain's
    time at a batch of 100 (docs/performance.md, F1). Use only inside one transaction: what the block
    sees is the subscriptions as of its first lookup, as if all its events were emitted at that moment.
    """
    if _wanted_by_workspace.get() is not None:
        yield  # an enclosing scope (a drain batch) already shares its lookups: keep them
        return
    token = _wanted_by_workspace.set({})
    try:
        yield
    finally:
        _wanted_by_workspace.reset(token)


def _workspace_wants(workspace_id: object, event_type: str) -> bool:
    """False only when a shared-lookup scope knows the workspace has no subscription for this type."""
    memo = _wanted_by_workspace.get()
    if memo is None:
        return True  # no scope: subscription_events_emit looks it up itself, as before
    if workspace_id not in memo:
        from outbox.models import EventSubscription  # outbox imports inbox models: import late

        wanted: set[str] = set()
        subscriptions = EventSubscription.objects.filter(workspace_id=str(workspace_id), active=True)
        for event_types in subscriptions.values_list("event_types", flat=True):
            wanted.update(event_types or [])
        memo[workspace_id] = wanted
    return event_type in memo[workspace_id]


def _emit_to_subscribers(
    workspace_id: object, event_type: str, *, message: Message | None = None, chat: Chat | None = None
) -> None:
    """Integrators' event subscriptions hear every change that browsers hear: every write passes here.

    Queued in the caller's transaction (outbox rows), so an event exists exactly when its change committed.
    """
    if not _workspace_wants(workspace_id, event_type):
        return
    # Imported late: outbox imports inbox models, and these helpers are imported by inbox services.
    from outbox.subscriptions import chat_event_data, message_event_data, subscription_events_emit

    if message is not None:
        subscription_events_emit(
            workspace=workspace_id,
            event_type=event_type,
            data=message_event_data(message),
            channel=message.channel_id,
        )
    elif chat is not None:
        subscription_events_emit(
            workspace=workspace_id, event_type=event_type, data=chat_event_data(chat), channel=chat.channel_id
        )
