"""The agent inbox: one page in three panes (sidebar, chat list, conversation) and the actions on it.

Every view works without JavaScript (full page, or POST then redirect); an htmx request gets only the
named partial of ``inbox/inbox.html`` (``template#partial``), the same partials the websocket pushes.
"""

from __future__ import annotations

import mimetypes
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages as flash
from django.contrib.auth import get_user_model
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import trigger_client_event

from channels_app.access import access_channel
from channels_app.models import Channel
from inbox.access import access_chat, access_message
from inbox.errors import InboxError
from inbox.models import Chat, Message
from inbox.selectors import (
    ChatFilters,
    channels_for_sidebar,
    chat_counts,
    chat_list,
    conversation_messages,
    message_for_bubble,
    workspace_agents,
)
from inbox.services import chat_assign, chat_mark_read, chat_set_status, chat_start
from tenants.access import memberships_for_user
from tenants.decorators import workspace_member_required

TEMPLATE = "inbox/inbox.html"
MAX_TEMPLATE_PARAMS = 10


# ---------------------------------------------------------------- context shared by views and consumer


def window_state(chat: Chat) -> dict[str, Any]:
    """Whether free text may be sent: Meta only allows templates once the 24-hour window has closed."""
    if chat.channel.provider != Channel.Provider.META:
        return {"window_open": True, "window_reason": ""}
    expires = chat.window_expires_at
    if expires is not None and expires > timezone.now():
        return {"window_open": True, "window_reason": "", "window_expires_at": expires}
    reason = (
        "The customer has not written in the last 24 hours, so WhatsApp only lets you send an approved "
        "template until they reply."
    )
    return {"window_open": False, "window_reason": reason}


def conversation_context(*, chat: Chat, workspace: Any, before: Any = None) -> dict[str, Any]:
    page = conversation_messages(chat=chat, before=before)
    return {
        "chat": chat,
        "message_page": page,
        "agents": workspace_agents(workspace=workspace),
        "client_message_id": uuid.uuid4(),
        "statuses": Chat.Status.choices,
        **window_state(chat),
    }


VIEW_LABELS = {"all": "All chats", "mine": "Mine", "unassigned": "Unassigned"}


def filter_nav(*, counts: dict[str, dict[str, int]], filters: ChatFilters) -> dict[str, Any]:
    """Sidebar links: each status counted within the current view, each view within the current status."""
    status_nav = [
        {
            "key": status,
            "label": label,
            "count": counts.get(status, {}).get(filters.view, 0),
            "active": status == filters.status,
            "query": urlencode({"view": filters.view, "status": status}),
        }
        for status, label in Chat.Status.choices
    ]
    view_nav = [
        {
            "key": view,
            "label": label,
            "count": counts.get(filters.status, {}).get(view, 0),
            "active": view == filters.view,
            "query": urlencode({"view": view, "status": filters.status}),
        }
        for view, label in VIEW_LABELS.items()
    ]
    return {"status_nav": status_nav, "view_nav": view_nav}


def list_context(*, workspace: Any, user: Any, filters: ChatFilters, cursor: str = "") -> dict[str, Any]:
    page = chat_list(workspace=workspace, user=user, filters=filters, cursor=cursor)
    return {
        "chat_page": page,
        "filters": filters,
        "filter_query": urlencode(filters.as_params()),
        "viewer_id": user.pk,
    }


def sidebar_context(*, workspace: Any, user: Any, filters: ChatFilters) -> dict[str, Any]:
    counts = chat_counts(workspace=workspace, user=user)
    return {
        "counts": counts,
        **filter_nav(counts=counts, filters=filters),
        "channels": channels_for_sidebar(workspace=workspace),
    }


def sync_token() -> str:
    return datetime.now(UTC).isoformat()


def page_context(
    *,
    request: HttpRequest,
    filters: ChatFilters,
    chat: Chat | None = None,
    before: Any = None,
    cursor: str = "",
) -> dict[str, Any]:
    context: dict[str, Any] = {
        "memberships": list(memberships_for_user(user=request.user)),
        **sidebar_context(workspace=_workspace(request), user=request.user, filters=filters),
        **list_context(workspace=_workspace(request), user=request.user, filters=filters, cursor=cursor),
        "open_chat_id": chat.pk if chat else None,
        "sync_token": sync_token(),
    }
    if chat is not None:
        context.update(conversation_context(chat=chat, workspace=_workspace(request), before=before))
    return context


def _workspace(request: HttpRequest) -> Any:
    """Set by tenants.middleware; workspace_member_required guarantees it on every view below."""
    return request.workspace  # type: ignore[attr-defined]


def _htmx(request: HttpRequest) -> Any:
    return request.htmx  # type: ignore[attr-defined]


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _back_to_chat(chat: Chat) -> HttpResponse:
    return redirect(reverse("inbox:chat", args=[chat.pk]))


# ---------------------------------------------------------------- pages


@require_GET
@workspace_member_required
def inbox(request: HttpRequest) -> HttpResponse:
    filters = ChatFilters.from_params(request.GET)
    if _htmx(request):
        # Search replaces the list region only (the search box keeps focus); switching view or status
        # replaces the list pane and, out of band, the sidebar's filter links with their counts.
        context = list_context(workspace=_workspace(request), user=request.user, filters=filters)
        context["open_chat_id"] = _int_or_none(request.GET.get("open"))
        if _htmx(request).target == "chat-list-region":
            return render(request, TEMPLATE + "#chat-list-region", context)
        counts = chat_counts(workspace=_workspace(request), user=request.user)
        context.update(filter_nav(counts=counts, filters=filters), filters_oob=True)
        context["channels"] = channels_for_sidebar(workspace=_workspace(request))
        return render(request, TEMPLATE + "#list-pane", context)
    return render(request, TEMPLATE, page_context(request=request, filters=filters))


@require_GET
@workspace_member_required
def chat_list_page(request: HttpRequest) -> HttpResponse:
    """The next page of the chat list (infinite scroll), after ``cursor``."""
    filters = ChatFilters.from_params(request.GET)
    cursor = request.GET.get("cursor", "")
    if _htmx(request):
        context = list_context(
            workspace=_workspace(request), user=request.user, filters=filters, cursor=cursor
        )
        context["open_chat_id"] = None
        return render(request, TEMPLATE + "#chat-list-more", context)
    return render(request, TEMPLATE, page_context(request=request, filters=filters, cursor=cursor))


@require_GET
@workspace_member_required
def conversation(request: HttpRequest, chat_id: int) -> HttpResponse:
    chat = access_chat(user=request.user, chat_id=chat_id, workspace=_workspace(request))
    if chat.unread_count or chat.last_read_at is None:
        # Opening a chat marks it read (the rule); only a chat with something unread is written.
        with transaction.atomic(durable=True):
            chat = access_chat(
                user=request.user, chat_id=chat_id, workspace=_workspace(request), for_write=True
            )
            chat_mark_read(chat=chat, user=request.user)
    if _htmx(request):
        context = {
            **conversation_context(chat=chat, workspace=_workspace(request)),
            "open_chat_id": chat.pk,
        }
        return render(request, TEMPLATE + "#conversation", context)
    filters = ChatFilters.from_params(request.GET)
    return render(request, TEMPLATE, page_context(request=request, filters=filters, chat=chat))


@require_GET
@workspace_member_required
def older_messages(request: HttpRequest, chat_id: int) -> HttpResponse:
    """Messages older than ``before`` (keyset), for scrolling up."""
    chat = access_chat(user=request.user, chat_id=chat_id, workspace=_workspace(request))
    before = request.GET.get("before", "")
    if _htmx(request):
        context = {"chat": chat, "message_page": conversation_messages(chat=chat, before=before)}
        return render(request, TEMPLATE + "#older-messages", context)
    filters = ChatFilters.from_params(request.GET)
    return render(request, TEMPLATE, page_context(request=request, filters=filters, chat=chat, before=before))


# ---------------------------------------------------------------- chat actions


def _chat_action_response(request: HttpRequest, chat: Chat) -> HttpResponse:
    """After an action on a chat: htmx gets the fresh header (others get it over the websocket)."""
    if _htmx(request):
        context = {
            "chat": chat,
            "agents": workspace_agents(workspace=_workspace(request)),
            "statuses": Chat.Status.choices,
            "open_chat_id": chat.pk,
        }
        return render(request, TEMPLATE + "#chat-header", context)
    return _back_to_chat(chat)


@require_POST
@workspace_member_required
def assign(request: HttpRequest, chat_id: int) -> HttpResponse:
    agent_id = request.POST.get("agent_id", "")
    with transaction.atomic(durable=True):
        chat = access_chat(user=request.user, chat_id=chat_id, workspace=_workspace(request), for_write=True)
        agent = None
        if agent_id == "me":
            agent = request.user
        elif agent_id:
            agent = (
                get_user_model()
                .objects.filter(
                    pk=int(agent_id) if agent_id.isdigit() else 0, memberships__workspace=chat.workspace_id
                )
                .first()
            )
            if agent is None:
                raise Http404("No such agent")
        chat_assign(chat=chat, agent=agent, acting_user=request.user)
    return _chat_action_response(request, chat)


@require_POST
@workspace_member_required
def set_status(request: HttpRequest, chat_id: int) -> HttpResponse:
    status = request.POST.get("status", "")
    if status not in Chat.Status.values:
        raise Http404("No such status")
    with transaction.atomic(durable=True):
        chat = access_chat(user=request.user, chat_id=chat_id, workspace=_workspace(request), for_write=True)
        chat_set_status(chat=chat, status=status, acting_user=request.user)
    return _chat_action_response(request, chat)


@require_POST
@workspace_member_required
def mark_read(request: HttpRequest, chat_id: int) -> HttpResponse:
    with transaction.atomic(durable=True):
        chat = access_chat(user=request.user, chat_id=chat_id, workspace=_workspace(request), for_write=True)
        chat_mark_read(chat=chat, user=request.user)
    if _htmx(request):
        return HttpResponse(status=204)
    return _back_to_chat(chat)


@require_POST
@workspace_member_required
def start(request: HttpRequest) -> HttpResponse:
    channel = access_channel(
        user=request.user, channel_id=request.POST.get("channel_id"), workspace=_workspace(request)
    )
    try:
        with transaction.atomic(durable=True):
            chat = chat_start(channel=channel, phone=request.POST.get("phone", ""), acting_user=request.user)
    except InboxError as error:
        if _htmx(request):  # said under the form, which stays as typed
            return render(request, TEMPLATE + "#start-chat-error", {"start_error": str(error)})
        flash.error(request, str(error))
        return redirect(reverse("inbox:index"))
    if _htmx(request):
        response = HttpResponse(status=204)
        response["HX-Location"] = reverse("inbox:chat", args=[chat.pk])
        return response
    return _back_to_chat(chat)


# ---------------------------------------------------------------- messages


def _media_type(upload: Any) -> str:
    mime = upload.content_type or mimetypes.guess_type(upload.name)[0] or ""
    for prefix, kind in (
        ("image/", Message.Type.IMAGE),
        ("video/", Message.Type.VIDEO),
        ("audio/", Message.Type.AUDIO),
    ):
        if mime.startswith(prefix):
            return kind
    return Message.Type.DOCUMENT


def _template_from_post(request: HttpRequest) -> dict[str, Any] | None:
    name = request.POST.get("template_name", "").strip()
    if not name:
        return None
    params = [p.strip() for p in request.POST.getlist("template_param") if p.strip()][:MAX_TEMPLATE_PARAMS]
    components = []
    if params:
        components.append({"type": "body", "parameters": [{"type": "text", "text": p} for p in params]})
    return {
        "name": name,
        "language": request.POST.get("template_language", "").strip() or "en_US",
        "components": components,
    }


def _send_failed(request: HttpRequest, chat: Chat, error: str, client_message_id: str) -> HttpResponse:
    if _htmx(request):
        response = render(request, TEMPLATE + "#composer-error", {"chat": chat, "composer_error": error})
        return trigger_client_event(
            response, "inbox:send-failed", {"client_message_id": client_message_id, "error": error}
        )
    flash.error(request, error)
    return _back_to_chat(chat)


@require_POST
@workspace_member_required
def send(request: HttpRequest, chat_id: int) -> HttpResponse:
    chat = access_chat(user=request.user, chat_id=chat_id, workspace=_workspace(request))
    from inbox.services.send import message_send  # the outbox issue's service, imported once it is needed

    client_message_id = request.POST.get("client_message_id", "").strip()[:128] or str(uuid.uuid4())
    # Browsers submit a textarea's line breaks as CRLF; WhatsApp and the bubbles want plain LF.
    text = request.POST.get("text", "").replace("\r\n", "\n").strip()
    upload = request.FILES.get("media_file")
    template = _template_from_post(request)
    reply_to = None
    if request.POST.get("reply_to", "").isdigit():
        reply_to = access_message(
            user=request.user, message_id=request.POST["reply_to"], workspace=_workspace(request)
        )
        if reply_to.chat_id != chat.pk:
            raise Http404("No such message")
    if not (text or upload or template):
        return _send_failed(request, chat, "Write a message or attach a file first.", client_message_id)
    kwargs: dict[str, Any] = {"chat": chat, "sender": request.user, "client_message_id": client_message_id}
    if template is not None:
        kwargs.update(type=Message.Type.TEMPLATE, template=template)
    elif upload is not None:
        kwargs.update(type=_media_type(upload), media_file=upload, filename=upload.name, caption=text)
    else:
        kwargs.update(text=text)
    if reply_to is not None:
        kwargs["reply_to"] = reply_to
    try:
        with transaction.atomic(durable=True):
            message = message_send(**kwargs)
    except InboxError as error:
        return _send_failed(request, chat, str(error), client_message_id)
    if _htmx(request):
        bubble = message_for_bubble(message_id=message.pk, chat_id=chat.pk)
        return render(request, TEMPLATE + "#message-push", {"chat": chat, "message": bubble})
    return _back_to_chat(chat)


@require_POST
@workspace_member_required
def retry(request: HttpRequest, message_id: int) -> HttpResponse:
    message = access_message(user=request.user, message_id=message_id, workspace=_workspace(request))
    from inbox.services.send import message_retry  # the outbox issue's service

    refused = ""
    try:
        with transaction.atomic(durable=True):
            message_retry(message=message, acting_user=request.user)
    except InboxError as error:
        refused = str(error)
    chat = message.chat
    if _htmx(request):
        bubble = message_for_bubble(message_id=message.pk, chat_id=chat.pk)
        response = render(request, TEMPLATE + "#message-push", {"chat": chat, "message": bubble})
        if refused:  # said above the composer at once, not on the next page load
            said = render(request, TEMPLATE + "#composer-error", {"chat": chat, "composer_error": refused})
            response.content += said.content
        return response
    if refused:
        flash.error(request, refused)
    return _back_to_chat(chat)


@require_POST
@workspace_member_required
def simulate(request: HttpRequest, channel_id: Any) -> HttpResponse:
    """Sandbox only: pretend a customer wrote to this number, so a new team sees the whole loop."""
    from channels_app.providers.base import InboundMessage
    from inbox.services.receive import inbound_events_apply  # the webhook issue's service

    channel = access_channel(user=request.user, channel_id=channel_id, workspace=_workspace(request))
    if channel.provider != Channel.Provider.SANDBOX:
        raise Http404("Only sandbox numbers can simulate customers")
    text = request.POST.get("text", "").strip() or "Hi! I have a question about my order."
    name = request.POST.get("name", "").strip() or "Sandbox Customer"
    phone = "".join(ch for ch in request.POST.get("phone", "") if ch.isdigit()) or "15550001111"
    event = InboundMessage(
        wa_message_id=f"sandbox.{uuid.uuid4().hex}",
        wa_chat_id=f"{phone}@s.whatsapp.net",
        from_me=False,
        type=Message.Type.TEXT,
        timestamp=timezone.now(),
        text=text[:4096],
        contact_name=name[:255],
        contact_phone=phone,
    )
    with transaction.atomic(durable=True):
        inbound_events_apply(channel=channel, events=[event])
    if _htmx(request):
        return HttpResponse(status=204)
    flash.success(request, "A simulated customer message arrived.")
    return redirect(reverse("inbox:index"))
