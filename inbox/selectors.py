"""Reads for the inbox pages and the websocket consumer. Each selector runs a fixed number of queries.

Paging is keyset (a cursor naming the last row seen), never OFFSET: the chat list walks the
``chat_ws_status_recent`` index (workspace, status, last_message_at DESC, id DESC) and a conversation
walks ``message_chat_sort`` (chat, sort_at DESC, id DESC), so page 500 costs what page 1 costs.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Prefetch, Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from channels_app.models import Channel
from inbox.models import Chat, Message, MessageReaction
from tenants.models import Membership

CHAT_PAGE_SIZE = 40
MESSAGE_PAGE_SIZE = 50

VIEWS = ("all", "mine", "unassigned")
STATUSES = tuple(Chat.Status.values)


@dataclass(frozen=True)
class ChatFilters:
    """What the chat list shows: a view (whose chats), a status and a search text."""

    view: str = "all"
    status: str = Chat.Status.OPEN
    q: str = ""

    @classmethod
    def from_params(cls, params: Any) -> ChatFilters:
        # From a query string or from the page's websocket messages (any JSON): strings only.
        view = str(params.get("view") or "all")
        status = str(params.get("status") or Chat.Status.OPEN)
        return cls(
            view=view if view in VIEWS else "all",
            status=status if status in STATUSES else Chat.Status.OPEN,
            # NUL can't be in a Postgres text value (the search would be a 500); nothing stored has one.
            q=str(params.get("q") or "").replace("\x00", "").strip()[:100],
        )

    def as_params(self) -> dict[str, str]:
        params = {"view": self.view, "status": self.status}
        if self.q:
            params["q"] = self.q
        return params


@dataclass(frozen=True)
class ChatPage:
    chats: list[Chat]
    next_cursor: str  # empty: this is the last page


def encode_chat_cursor(chat: Chat) -> str:
    stamp = chat.last_message_at.isoformat() if chat.last_message_at else ""
    return base64.urlsafe_b64encode(f"{stamp}|{chat.pk}".encode()).decode().rstrip("=")


def decode_chat_cursor(cursor: str) -> tuple[datetime | None, int] | None:
    """(last_message_at, id) of the last chat of the previous page, or None for a malformed cursor."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, chat_id = raw.split("|", 1)
        parsed = parse_datetime(stamp) if stamp else None
        if stamp and parsed is None:
            return None
        return parsed, int(chat_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None


def _chats_matching(*, workspace: Any, user: Any, filters: ChatFilters) -> QuerySet[Chat]:
    qs = Chat.objects.filter(workspace=workspace, status=filters.status, archived=False)
    if filters.view == "mine":
        qs = qs.filter(assignee=user)
    elif filters.view == "unassigned":
        qs = qs.filter(assignee__isnull=True)
    if filters.q:
        q = filters.q
        digits = "".join(ch for ch in q if ch.isdigit())
        # The chats with a matching message, found once through the message text's trigram index (a
        # per-chat EXISTS under this OR could not use it: 650 ms at a million messages).
        in_text = Message.objects.filter(
            channel__workspace=workspace, text__icontains=q, deleted_at__isnull=True
        ).values("chat_id")
        match = Q(contact_name__icontains=q) | Q(pk__in=in_text)
        if digits:
            match = match | Q(contact_phone__contains=digits) | Q(wa_chat_id__contains=digits)
        qs = qs.filter(match)
    return qs


def chat_matches(*, chat: Chat, user: Any, filters: ChatFilters) -> bool:
    """Whether ``chat`` belongs in a list with these filters (the consumer asks for each pushed chat)."""
    if chat.status != filters.status or chat.archived:
        return False
    if filters.view == "mine" and chat.assignee_id != getattr(user, "pk", None):
        return False
    if filters.view == "unassigned" and chat.assignee_id is not None:
        return False
    if filters.q:
        return (
            _chats_matching(workspace=chat.workspace_id, user=user, filters=filters)
            .filter(pk=chat.pk)
            .exists()
        )
    return True


def chat_list(
    *, workspace: Any, user: Any, filters: ChatFilters, cursor: str = "", limit: int = CHAT_PAGE_SIZE
) -> ChatPage:
    """Newest chats first, one page after ``cursor``. One query."""
    qs = _chats_matching(workspace=workspace, user=user, filters=filters)
    position = decode_chat_cursor(cursor) if cursor else None
    if position is not None:
        stamp, chat_id = position
        # Postgres sorts NULLs first in DESC order: chats without a message come before all others.
        if stamp is None:
            qs = qs.filter(Q(last_message_at__isnull=True, id__lt=chat_id) | Q(last_message_at__isnull=False))
        else:
            qs = qs.filter(Q(last_message_at__lt=stamp) | Q(last_message_at=stamp, id__lt=chat_id))
    rows = list(qs.select_related("channel", "assignee").order_by("-last_message_at", "-id")[: limit + 1])
    has_more = len(rows) > limit
    rows = rows[:limit]
    return ChatPage(chats=rows, next_cursor=encode_chat_cursor(rows[-1]) if has_more and rows else "")


def chat_for_row(*, chat_id: int, workspace_id: Any) -> Chat | None:
    """One chat with what its list row shows, or None if it is gone or not in this workspace."""
    return (
        Chat.objects.select_related("channel", "assignee")
        .filter(pk=chat_id, workspace_id=workspace_id)
        .first()
    )


def chat_counts(*, workspace: Any, user: Any) -> dict[str, dict[str, int]]:
    """Counts per status and view, e.g. ``counts["open"]["mine"]``. One aggregate query."""
    aggregates: dict[str, Any] = {}
    for status in STATUSES:
        in_status = Q(status=status)
        aggregates[f"{status}__all"] = Count("id", filter=in_status)
        aggregates[f"{status}__mine"] = Count("id", filter=in_status & Q(assignee=user))
        aggregates[f"{status}__unassigned"] = Count("id", filter=in_status & Q(assignee__isnull=True))
    row = Chat.objects.filter(workspace=workspace, archived=False).aggregate(**aggregates)
    counts: dict[str, dict[str, int]] = {status: {} for status in STATUSES}
    for key, value in row.items():
        status, view = key.split("__")
        counts[status][view] = value or 0
    return counts


def channels_for_sidebar(*, workspace: Any) -> list[Channel]:
    return list(Channel.objects.filter(workspace=workspace).order_by("display_name", "pk"))


def workspace_agents(*, workspace: Any) -> list[Membership]:
    """People a chat can be assigned to."""
    return list(Membership.objects.filter(workspace=workspace).select_related("user").order_by("user__email"))


def _messages_with_extras(qs: QuerySet[Message]) -> QuerySet[Message]:
    return qs.select_related("reply_to", "sender").prefetch_related(
        Prefetch("reactions", queryset=MessageReaction.objects.order_by("reacted_at", "id"))
    )


@dataclass(frozen=True)
class MessagePage:
    messages: list[Message]  # oldest first, as they are shown
    has_older: bool


def conversation_messages(*, chat: Chat, before: Any = None, limit: int = MESSAGE_PAGE_SIZE) -> MessagePage:
    """The newest ``limit`` messages of the chat, or those just older than message ``before``.

    Keyset on (sort_at, id): three queries (anchor, page, reactions) however deep the page.
    """
    qs = Message.objects.filter(chat=chat)
    if before not in (None, ""):
        anchor = (
            Message.objects.filter(chat=chat, pk=before).values("sort_at", "id").first()
            if str(before).isdigit()
            else None
        )
        if anchor is None:
            return MessagePage(messages=[], has_older=False)
        qs = qs.filter(Q(sort_at__lt=anchor["sort_at"]) | Q(sort_at=anchor["sort_at"], id__lt=anchor["id"]))
    rows = list(_messages_with_extras(qs).order_by("-sort_at", "-id")[: limit + 1])
    has_older = len(rows) > limit
    rows = rows[:limit]
    rows.reverse()
    return MessagePage(messages=rows, has_older=has_older)


def message_for_bubble(*, message_id: Any, chat_id: Any) -> Message | None:
    return _messages_with_extras(Message.objects.filter(pk=message_id, chat_id=chat_id)).first()


# Pushes go out right after commit; a write that committed this long before the last frame a browser
# saw was already pushed while its socket was still up, so a re-sync looks back this far, no further.
RESYNC_MARGIN = timedelta(seconds=10)
RESYNC_MAX_MESSAGES = 200


def messages_changed_since(*, chat: Chat, since: datetime) -> list[Message] | None:
    """Messages created or changed since ``since`` (minus a margin), oldest first.

    None when there are too many to patch in: the caller re-renders the latest page instead.
    """
    qs = _messages_with_extras(Message.objects.filter(chat=chat, updated_at__gte=since - RESYNC_MARGIN))
    rows = list(qs.order_by("sort_at", "id")[: RESYNC_MAX_MESSAGES + 1])
    if len(rows) > RESYNC_MAX_MESSAGES:
        return None
    return rows


def parse_sync_token(token: str) -> datetime | None:
    parsed = parse_datetime(token or "")
    if parsed is None or timezone.is_naive(parsed):
        return None
    return parsed


@dataclass(frozen=True)
class TimelineEntry:
    kind: str
    occurred_at: datetime
    detail: dict[str, Any]


def message_timeline(*, message: Message) -> list[TimelineEntry]:
    """One message's history, oldest first: what happened to it, from WhatsApp to the agent's screen.

    Inbound: ``received`` (WhatsApp's own timestamp), ``stored`` (our webhook endpoint committed the raw
    event, before answering the provider), ``processed`` (the message row was written), ``pushed`` (sent
    to open browsers), then edits, reactions… Outbound: ``queued``, ``claimed``, ``sent``, ``delivered``,
    ``read`` or ``failed`` (with its code), and ``retry`` steps. The rows come from MessageEvent; the
    inbound ``stored`` step is the row the receive service records at the webhook's arrival.
    """
    entries: list[TimelineEntry] = []
    events = list(message.events.all())
    if message.direction == Message.Direction.INBOUND:
        if message.provider_timestamp is not None:
            entries.append(TimelineEntry("received", message.provider_timestamp, {"source": "provider"}))
        entries.append(TimelineEntry("processed", message.created_at, {}))
    for event in events:
        kind = event.kind
        if kind == "received" and message.direction == Message.Direction.INBOUND:
            kind = "stored"
        entries.append(TimelineEntry(kind, event.occurred_at, dict(event.detail or {})))
    # Same-instant steps keep their causal order (stored before processed before pushed).
    order = {
        name: index
        for index, name in enumerate(
            ["received", "stored", "processed", "pushed", "queued", "claimed", "sent", "delivered", "read"]
        )
    }
    return sorted(entries, key=lambda entry: (entry.occurred_at, order.get(entry.kind, 99)))
