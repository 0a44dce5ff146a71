"""The inbox websocket (/ws/inbox/): pushes the page's own partials as htmx out-of-band swaps.

1. connect: the session's user and chosen workspace (membership checked) → join ``ws.<workspace>``.
2. the page says what it shows ({"action": "sync", "chat_id", "view", "status", "q", "since"}):
   the chat is access-checked before joining ``chat.<chat>``; with ``since`` (a token from an
   earlier frame) the consumer re-sends what changed meanwhile, because a channel layer delivers at
   most once and a dropped socket misses events.
3. events (inbox/realtime.py) map to handlers (``chat.updated`` → ``chat_updated``); each renders
   fragments from templates/inbox/inbox.html and sends them in one frame.

Thin: no writes here, every ORM call through ``database_sync_to_async``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.http import Http404
from django.template.loader import render_to_string

from channels_app.models import Channel
from config.metrics import WEBSOCKETS_OPEN
from inbox.access import access_chat
from inbox.models import Chat
from inbox.selectors import (
    ChatFilters,
    channels_for_sidebar,
    chat_counts,
    chat_for_row,
    chat_list,
    chat_matches,
    conversation_messages,
    message_for_bubble,
    messages_changed_since,
    parse_sync_token,
    workspace_agents,
)
from inbox.views import TEMPLATE, filter_nav, sync_token, window_state
from tenants.middleware import SESSION_WORKSPACE_KEY
from tenants.models import Membership
from tenants.realtime import chat_group, workspace_group
from tenants.selectors import current_membership

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NO_WORKSPACE = 4403


def _partial(name: str, context: dict[str, Any]) -> str:
    return render_to_string(f"{TEMPLATE}#{name}", context)


# One event reaches every socket of a workspace at once, and sockets that would render the same fragment
# (same message; same chat for the same agent and list) share one render instead of queueing a hundred
# identical ones on the database thread. Only renders in flight are shared: a later event renders anew.
_renders_in_flight: dict[tuple[Any, ...], asyncio.Future[Any]] = {}


async def _render_shared(key: tuple[Any, ...], render: Callable[[], Any]) -> Any:
    in_flight = _renders_in_flight.get(key)
    if in_flight is not None:
        return await asyncio.shield(in_flight)
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    _renders_in_flight[key] = future
    try:
        result = await database_sync_to_async(render)()
    except BaseException:
        future.set_result(None)  # the sharers send nothing; the renderer's error propagates
        raise
    finally:
        _renders_in_flight.pop(key, None)
    future.set_result(result)
    return result


class InboxConsumer(AsyncJsonWebsocketConsumer):
    user: Any
    membership: Membership
    chat_id: int | None
    filters: ChatFilters
    window_open: bool | None

    async def connect(self) -> None:
        self.user = self.scope.get("user")
        if self.user is None or not self.user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        session = self.scope.get("session")
        chosen = session.get(SESSION_WORKSPACE_KEY) if session is not None else None
        membership = await database_sync_to_async(current_membership)(self.user, chosen)
        if membership is None or not membership.workspace.is_active:
            await self.close(code=CLOSE_NO_WORKSPACE)
            return
        self.membership = membership
        self.chat_id = None
        self.filters = ChatFilters()
        self.window_open = None
        self.workspace_group = workspace_group(membership.workspace_id)
        await self.channel_layer.group_add(self.workspace_group, self.channel_name)
        await self.accept()
        WEBSOCKETS_OPEN.inc()

    async def disconnect(self, code: int) -> None:
        if getattr(self, "membership", None) is None:
            return
        WEBSOCKETS_OPEN.dec()
        await self.channel_layer.group_discard(self.workspace_group, self.channel_name)
        if self.chat_id is not None:
            await self.channel_layer.group_discard(chat_group(self.chat_id), self.channel_name)

    # ------------------------------------------------------------ from the browser

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict):
            return
        action = content.get("action")
        if action in ("sync", "open_chat"):
            await self._page_sync(content)
        elif action == "filters":
            self.filters = ChatFilters.from_params(content)

    async def _page_sync(self, content: dict[str, Any]) -> None:
        if any(key in content for key in ("view", "status", "q")):
            self.filters = ChatFilters.from_params(content)
        chat = await self._join_chat(content.get("chat_id"))
        since = parse_sync_token(str(content.get("since") or ""))
        if since is not None:
            html = await database_sync_to_async(self._render_resync)(chat, since)
            await self.send(text_data=html)

    async def _join_chat(self, raw_chat_id: Any) -> Chat | None:
        """Follow the chat the page has open, if this user may see it; leave the previous one."""
        chat: Chat | None = None
        if raw_chat_id not in (None, ""):
            try:
                chat = await database_sync_to_async(access_chat)(
                    user=self.user, chat_id=raw_chat_id, workspace=self.membership.workspace
                )
            except Http404:
                chat = None
        new_id = chat.pk if chat is not None else None
        if new_id != self.chat_id:
            if self.chat_id is not None:
                await self.channel_layer.group_discard(chat_group(self.chat_id), self.channel_name)
            if new_id is not None:
                await self.channel_layer.group_add(chat_group(new_id), self.channel_name)
            self.chat_id = new_id
            self.window_open = window_state(chat)["window_open"] if chat is not None else None
        return chat

    # ------------------------------------------------------------ events from inbox/realtime.py

    async def chat_updated(self, event: dict[str, Any]) -> None:
        chat_id = event["chat_id"]
        is_open = chat_id == self.chat_id
        key = ("chat", chat_id, self.membership.workspace_id, self.user.pk, self.filters, is_open)
        rendered = await _render_shared(key, lambda: self._render_chat_updated(chat_id, is_open))
        if not rendered:
            return
        html, chat = rendered
        if is_open and chat is not None:
            window_open = window_state(chat)["window_open"]
            if window_open != self.window_open:
                # Only when the window opens or closes: re-rendering the composer would wipe a draft.
                self.window_open = window_open
                html += await database_sync_to_async(self._render_composer)(chat)
        await self.send(text_data=html)

    async def chats_updated(self, event: dict[str, Any]) -> None:
        for chat_id in event["chat_ids"]:
            await self.chat_updated({"chat_id": chat_id})

    async def message_created(self, event: dict[str, Any]) -> None:
        await self._send_bubble(event)

    async def message_updated(self, event: dict[str, Any]) -> None:
        await self._send_bubble(event)

    async def messages_created(self, event: dict[str, Any]) -> None:
        await self._send_bubbles("message.created", event["items"])

    async def messages_updated(self, event: dict[str, Any]) -> None:
        await self._send_bubbles("message.updated", event["items"])

    async def _send_bubbles(self, kind: str, items: list[list[int]]) -> None:
        # Sent to the whole workspace: only the bubbles of the chat this page has open (its access was
        # checked when it joined) are rendered.
        for chat_id, message_id in items:
            if chat_id == self.chat_id:
                await self._send_bubble({"type": kind, "message_id": message_id, "chat_id": chat_id})

    async def message_removed(self, event: dict[str, Any]) -> None:
        if event.get("chat_id") == self.chat_id:
            await self.send(text_data=f'<li id="msg-{int(event["message_id"])}" hx-swap-oob="delete"></li>')

    async def channel_status(self, event: dict[str, Any]) -> None:
        html = await database_sync_to_async(self._render_channel_status)(event["channel_id"])
        if html:
            await self.send(text_data=html)

    async def _send_bubble(self, event: dict[str, Any]) -> None:
        # The page may have switched chats since this event was queued for the old chat's group.
        if event.get("chat_id") != self.chat_id:
            return
        message_id, chat_id = event["message_id"], event["chat_id"]
        key = ("bubble", event.get("type"), message_id, chat_id)
        html = await _render_shared(key, lambda: self._render_bubble(message_id, chat_id))
        if html:
            await self.send(text_data=html)

    # ------------------------------------------------------------ rendering (sync, in a thread)

    def _base_context(self) -> dict[str, Any]:
        return {
            "viewer_id": self.user.pk,
            "open_chat_id": self.chat_id,
            "filters": self.filters,
            "filter_query": urlencode(self.filters.as_params()),
            "oob": True,
        }

    def _sync_token_html(self) -> str:
        return _partial("sync-token", {"sync_token": sync_token(), "oob": True})

    def _counts_html(self) -> str:
        counts = chat_counts(workspace=self.membership.workspace_id, user=self.user)
        return _partial(
            "chat-filters", {**self._base_context(), **filter_nav(counts=counts, filters=self.filters)}
        )

    def _render_chat_updated(self, chat_id: int, is_open: bool) -> tuple[str, Chat | None]:
        """The chat's row (or its removal), the counts, and the header if the chat is open here."""
        token = self._sync_token_html()
        chat = chat_for_row(chat_id=chat_id, workspace_id=self.membership.workspace_id)
        parts = [token]
        if chat is None or not chat_matches(chat=chat, user=self.user, filters=self.filters):
            parts.append(f'<li id="chat-row-{int(chat_id)}" hx-swap-oob="delete"></li>')
        else:
            context = {**self._base_context(), "chat": chat, "open_chat_id": chat_id if is_open else None}
            parts.append(f'<ul hx-swap-oob="beforeend:#chat-list-items">{_partial("chat-row", context)}</ul>')
        parts.append(self._counts_html())
        if chat is not None and is_open:
            context = {
                **self._base_context(),
                "chat": chat,
                "agents": workspace_agents(workspace=self.membership.workspace_id),
            }
            parts.append(_partial("chat-header", context))
        return "".join(parts), chat

    def _render_composer(self, chat: Chat) -> str:
        context = {**self._base_context(), "chat": chat, **window_state(chat), "client_message_id": ""}
        return _partial("composer", context)

    def _render_bubble(self, message_id: int, chat_id: int) -> str:
        message = message_for_bubble(message_id=message_id, chat_id=chat_id)
        if message is None:
            return ""
        chat = message.chat
        return self._sync_token_html() + _partial(
            "message-push", {**self._base_context(), "chat": chat, "message": message}
        )

    def _render_channel_status(self, channel_id: Any) -> str:
        channels = channels_for_sidebar(workspace=self.membership.workspace_id)
        channel = next((c for c in channels if str(c.pk) == str(channel_id)), None)
        if channel is None:
            return ""
        context = {**self._base_context(), "channel": channel, "channels": channels}
        return _partial("channel-item", context) + _partial("channel-alerts", context)

    def _render_resync(self, chat: Chat | None, since: Any) -> str:
        """Everything a page may have missed while its socket was down, keyed so nothing doubles."""
        workspace_id = self.membership.workspace_id
        token = self._sync_token_html()  # taken before the reads: a write racing them is re-sent next time
        base = self._base_context()
        page = chat_list(workspace=workspace_id, user=self.user, filters=self.filters)
        channels: list[Channel] = channels_for_sidebar(workspace=workspace_id)
        list_context = {**base, "chat_page": page, "channels": channels}
        parts = [
            token,
            _partial("chat-list-region", list_context),
            self._counts_html(),
            _partial("channel-alerts", list_context),
            *(_partial("channel-item", {**base, "channel": c}) for c in channels),
        ]
        if chat is not None:
            context = {**base, "chat": chat, "agents": workspace_agents(workspace=workspace_id)}
            parts.append(_partial("chat-header", context))
            changed = messages_changed_since(chat=chat, since=since)
            if changed is None:
                # Too much happened: replace the latest page rather than patching it message by message.
                message_page = conversation_messages(chat=chat)
                parts.append(_partial("older-sentinel", {**context, "message_page": message_page}))
                parts.append(_partial("message-list", {**context, "message_page": message_page}))
            elif changed:
                parts.append(_partial("messages-resync", {**context, "resync_messages": changed}))
        return "".join(parts)
