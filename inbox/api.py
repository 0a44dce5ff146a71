"""REST API v1: chats and messages. Every member reads, sends, changes status and assigns themselves;
admins assign anyone in the workspace.

Writes go through ``inbox.services`` inside a durable transaction owned here; the services push
realtime events and queue subscription deliveries (``inbox.realtime``) after/with the commit.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from channels_app.access import access_channel
from inbox.access import access_chat, access_message, chats_for_user
from inbox.errors import ClientMessageIdConflict, InboxError, WindowClosedError
from inbox.models import Chat, Message, MessageEvent
from inbox.selectors import message_timeline
from inbox.services import chat_assign, chat_mark_read, chat_set_status, chat_start, message_send
from tenants.api_envelope import ApiError, Enveloped, PageLimitPagination, enveloped
from tenants.models import Membership
from tenants.permissions import request_membership, request_workspace

# Postgres bigint: an id beyond it can't exist, and must be a 400 rather than a database error.
MAX_ID = 2**63 - 1
MESSAGE_PAGE_DEFAULT = 50
MESSAGE_PAGE_MAX = 100
# What an agent (or integration) can send: Message.Type minus what only arrives from customers.
SEND_TYPES = ["text", "image", "video", "audio", "document", "template"]


def _inbox_error(error: InboxError) -> ApiError:
    """The inbox's refusals, as the API's status codes: 422 closed window, 409 reused id, else 400."""
    if isinstance(error, WindowClosedError):
        return ApiError(str(error), status=422, code=error.code)
    if isinstance(error, ClientMessageIdConflict):
        return ApiError(str(error), status=409, code=error.code, fields={"client_message_id": [str(error)]})
    return ApiError(str(error), status=400, code=error.code)


# ---------------------------------------------------------------- output


class UserRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()


class ChatOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    channel_id = serializers.UUIDField()
    wa_chat_id = serializers.CharField()
    display_name = serializers.CharField()
    contact_name = serializers.CharField()
    contact_phone = serializers.CharField()
    is_group = serializers.BooleanField()
    status = serializers.ChoiceField(choices=Chat.Status.choices)
    assignee = UserRefSerializer(allow_null=True)
    unread_count = serializers.IntegerField()
    last_message_preview = serializers.CharField()
    last_message_at = serializers.DateTimeField(allow_null=True)
    window_expires_at = serializers.DateTimeField(
        allow_null=True, help_text="Meta only: free text is allowed until then."
    )
    last_read_at = serializers.DateTimeField(allow_null=True)
    archived = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ReactionSerializer(serializers.Serializer):
    emoji = serializers.CharField()
    reactor_wa_id = serializers.CharField()
    reacted_at = serializers.DateTimeField()


class MediaSerializer(serializers.Serializer):
    url = serializers.CharField(source="media_url")
    mime_type = serializers.CharField(source="media_mime_type")
    filename = serializers.CharField(source="media_filename")
    size = serializers.IntegerField(source="media_size", allow_null=True)
    status = serializers.CharField(source="media_status")


class MessageOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    chat_id = serializers.IntegerField()
    channel_id = serializers.UUIDField()
    wa_message_id = serializers.CharField(allow_null=True)
    client_message_id = serializers.CharField(allow_null=True)
    direction = serializers.ChoiceField(choices=Message.Direction.choices)
    type = serializers.ChoiceField(choices=Message.Type.choices)
    text = serializers.CharField()
    status = serializers.ChoiceField(choices=Message.Status.choices)
    error_code = serializers.CharField()
    error_message = serializers.CharField()
    sender = UserRefSerializer(allow_null=True)
    author_name = serializers.CharField()
    reply_to_id = serializers.IntegerField(allow_null=True)
    media = serializers.SerializerMethodField()
    reactions = ReactionSerializer(many=True)
    provider_timestamp = serializers.DateTimeField(allow_null=True)
    sent_at = serializers.DateTimeField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)
    read_at = serializers.DateTimeField(allow_null=True)
    failed_at = serializers.DateTimeField(allow_null=True)
    edited_at = serializers.DateTimeField(allow_null=True)
    deleted_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()

    @extend_schema_field(MediaSerializer(allow_null=True))
    def get_media(self, message: Message) -> dict[str, Any] | None:
        if not (message.media_url or message.media_file or message.media_id):
            return None
        return dict(MediaSerializer(message).data)


class MessageEventSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=[*MessageEvent.Kind.choices, ("stored", "Raw webhook stored")])
    detail = serializers.DictField()
    occurred_at = serializers.DateTimeField()


class MessageDetailOutputSerializer(MessageOutputSerializer):
    timeline = serializers.SerializerMethodField(help_text="Oldest first.")

    @extend_schema_field(MessageEventSerializer(many=True))
    def get_timeline(self, message: Message) -> Any:
        return MessageEventSerializer(message_timeline(message=message), many=True).data


class KeysetSerializer(serializers.Serializer):
    limit = serializers.IntegerField()
    hasMore = serializers.BooleanField()  # camelCase like totalPages: the contract names it so
    nextBefore = serializers.IntegerField(
        allow_null=True, help_text="Pass as ?before= for the next (older) page; null on the last page."
    )


class MessagePageSerializer(Enveloped, serializers.Serializer):
    """Describes the keyset page for the schema only; never instantiated to render."""

    success = serializers.BooleanField()
    # A field named like Serializer.data, on purpose: it is the envelope's key.
    data = MessageOutputSerializer(many=True)  # type: ignore[assignment]
    pagination = KeysetSerializer()


def _messages(qs: QuerySet[Message]) -> QuerySet[Message]:
    return qs.select_related("sender").prefetch_related("reactions")


# ---------------------------------------------------------------- chats


class ChatFiltersSerializer(serializers.Serializer):
    channel = serializers.UUIDField(required=False, help_text="Only this number's chats.")
    status = serializers.ChoiceField(choices=Chat.Status.choices, required=False)
    assignee = serializers.RegexField(
        r"^(me|none|[0-9]{1,18})$",
        required=False,
        help_text="`me`, `none` (unassigned) or a user id.",
    )
    q = serializers.CharField(required=False, max_length=100, help_text="Name, phone number or message text.")
    updated_since = serializers.DateTimeField(
        required=False, help_text="Only chats changed at or after this."
    )


def chat_api_list(*, request: Request, filters: dict[str, Any]) -> QuerySet[Chat]:
    """The workspace's chats matching the API filters, newest activity first."""
    workspace = request_workspace(request)
    qs = chats_for_user(user=request.user, workspace=workspace)
    if "channel" in filters:
        qs = qs.filter(channel_id=filters["channel"])
    if "status" in filters:
        qs = qs.filter(status=filters["status"])
    assignee = filters.get("assignee")
    if assignee == "me":
        qs = qs.filter(assignee_id=request.user.pk)
    elif assignee == "none":
        qs = qs.filter(assignee__isnull=True)
    elif assignee:
        qs = qs.filter(assignee_id=int(assignee))
    q = (filters.get("q") or "").strip()
    if q:
        digits = "".join(ch for ch in q if ch.isdigit())
        match: Any = Q(contact_name__icontains=q) | Exists(
            Message.objects.filter(chat=OuterRef("pk"), text__icontains=q, deleted_at__isnull=True)
        )
        if digits:
            match |= Q(contact_phone__contains=digits) | Q(wa_chat_id__contains=digits)
        qs = qs.filter(match)
    if "updated_since" in filters:
        qs = qs.filter(updated_at__gte=filters["updated_since"])
    return qs.select_related("assignee").order_by(F("last_message_at").desc(nulls_last=True), "-id")


class ChatListCreateApi(APIView):
    pagination_class = PageLimitPagination

    class InputSerializer(serializers.Serializer):
        channel = serializers.UUIDField(help_text="The number to write from.")
        phone = serializers.CharField(max_length=32, help_text="The customer's number with country code.")

    @extend_schema(
        operation_id="chats_list",
        parameters=[ChatFiltersSerializer],
        responses=ChatOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        filters = ChatFiltersSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        chats = chat_api_list(request=request, filters=filters.validated_data)
        paginator = PageLimitPagination()
        page = paginator.paginate_queryset(chats, request, view=self)
        return paginator.get_paginated_response(ChatOutputSerializer(page, many=True).data)

    @extend_schema(
        operation_id="chats_create", request=InputSerializer, responses={201: ChatOutputSerializer}
    )
    def post(self, request: Request) -> Response:
        workspace = request_workspace(request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        channel = access_channel(
            user=request.user, channel_id=data.validated_data["channel"], workspace=workspace
        )
        try:
            with transaction.atomic(durable=True):
                chat = chat_start(
                    channel=channel, phone=data.validated_data["phone"], acting_user=request.user
                )
        except InboxError as error:
            raise ApiError(str(error), code=error.code, fields={"phone": [str(error)]}) from None
        chat = access_chat(user=request.user, chat_id=chat.pk, workspace=workspace)
        return Response(ChatOutputSerializer(chat).data, status=201)


def _assignee_for(*, request: Request, chat: Chat, assignee_id: int | None) -> Any:
    """Who the chat goes to, if this caller may give it to them.

    Agents may take a chat or let go of their own; admins may give it to anyone in the workspace.
    Someone outside the workspace (or no such user) is a 400 on ``assignee``, without saying which.
    """
    membership = request_membership(request)
    is_admin = membership is not None and membership.is_admin
    if assignee_id is None:
        if not is_admin and chat.assignee_id not in (None, request.user.pk):
            raise PermissionDenied("Agents can only unassign themselves.")
        return None
    if not is_admin and assignee_id != request.user.pk:
        raise PermissionDenied("Agents can only assign chats to themselves.")
    if not Membership.objects.filter(workspace_id=chat.workspace_id, user_id=assignee_id).exists():
        message = "Only people in this workspace can be assigned a chat."
        raise ApiError(message, code="invalid_assignee", fields={"assignee": [message]})
    return get_user_model().objects.get(pk=assignee_id)


class ChatDetailApi(APIView):
    class InputSerializer(serializers.Serializer):
        assignee = serializers.IntegerField(
            required=False, allow_null=True, min_value=1, max_value=MAX_ID, help_text="A user id, or null."
        )
        status = serializers.ChoiceField(choices=Chat.Status.choices, required=False)

    @extend_schema(operation_id="chats_retrieve", responses=ChatOutputSerializer)
    def get(self, request: Request, pk: int) -> Response:
        chat = access_chat(user=request.user, chat_id=pk, workspace=request_workspace(request))
        return Response(ChatOutputSerializer(chat).data)

    @extend_schema(operation_id="chats_update", request=InputSerializer, responses=ChatOutputSerializer)
    def patch(self, request: Request, pk: int) -> Response:
        workspace = request_workspace(request)
        access_chat(user=request.user, chat_id=pk, workspace=workspace)  # 404 before validation
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            with transaction.atomic(durable=True):
                chat = access_chat(user=request.user, chat_id=pk, workspace=workspace, for_write=True)
                if "assignee" in data.validated_data:
                    agent = _assignee_for(
                        request=request, chat=chat, assignee_id=data.validated_data["assignee"]
                    )
                    chat_assign(chat=chat, agent=agent, acting_user=request.user)
                if "status" in data.validated_data:
                    chat_set_status(chat=chat, status=data.validated_data["status"], acting_user=request.user)
        except InboxError as error:
            raise _inbox_error(error) from None
        chat = access_chat(user=request.user, chat_id=pk, workspace=workspace)
        return Response(ChatOutputSerializer(chat).data)


class ChatReadApi(APIView):
    @extend_schema(operation_id="chats_mark_read", request=None, responses=ChatOutputSerializer)
    def post(self, request: Request, pk: int) -> Response:
        workspace = request_workspace(request)
        with transaction.atomic(durable=True):
            chat = access_chat(user=request.user, chat_id=pk, workspace=workspace, for_write=True)
            chat_mark_read(chat=chat, user=request.user)
        return Response(ChatOutputSerializer(chat).data)


# ---------------------------------------------------------------- messages


class TemplateInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=512)
    language = serializers.CharField(max_length=32, help_text="e.g. en_US")
    components = serializers.ListField(child=serializers.DictField(), required=False, default=list)


class ChatMessagesApi(APIView):
    api_errors = {
        "POST": {
            "409": "client_message_id was already used for a different message.",
            "422": "The Meta customer-service window is closed: only a template can be sent.",
        }
    }

    class FiltersSerializer(serializers.Serializer):
        before = serializers.IntegerField(
            required=False, min_value=1, max_value=MAX_ID, help_text="A message id: return older messages."
        )
        limit = serializers.IntegerField(
            required=False, min_value=1, max_value=MESSAGE_PAGE_MAX, default=MESSAGE_PAGE_DEFAULT
        )

    class InputSerializer(serializers.Serializer):
        client_message_id = serializers.CharField(
            max_length=128, help_text="Your id for this send: repeating it with the same body is harmless."
        )
        type = serializers.ChoiceField(choices=SEND_TYPES, default="text")
        text = serializers.CharField(required=False, allow_blank=True, default="", max_length=4096)
        media_url = serializers.URLField(required=False, allow_blank=True, default="", max_length=2000)
        filename = serializers.CharField(required=False, allow_blank=True, default="", max_length=255)
        caption = serializers.CharField(required=False, allow_blank=True, default="", max_length=1024)
        template = TemplateInputSerializer(required=False, allow_null=True, default=None)
        reply_to = serializers.IntegerField(
            required=False,
            allow_null=True,
            default=None,
            min_value=1,
            max_value=MAX_ID,
            help_text="A message id.",
        )

    @extend_schema(
        operation_id="chats_messages_list", parameters=[FiltersSerializer], responses=MessagePageSerializer
    )
    def get(self, request: Request, pk: int) -> Response:
        chat = access_chat(user=request.user, chat_id=pk, workspace=request_workspace(request))
        filters = self.FiltersSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        limit = filters.validated_data["limit"]
        qs = Message.objects.filter(chat=chat)
        before = filters.validated_data.get("before")
        if before is not None:
            anchor = Message.objects.filter(chat=chat, pk=before).values("sort_at", "id").first()
            if anchor is None:
                message = "No such message in this chat."
                raise ApiError(message, code="validation_error", fields={"before": [message]})
            qs = qs.filter(
                Q(sort_at__lt=anchor["sort_at"]) | Q(sort_at=anchor["sort_at"], id__lt=anchor["id"])
            )
        # Keyset on the (chat, sort_at DESC, id DESC) index: any page costs what the first one does.
        rows = list(_messages(qs).order_by("-sort_at", "-id")[: limit + 1])
        has_more = len(rows) > limit
        rows = rows[:limit]
        return enveloped(
            MessageOutputSerializer(rows, many=True).data,
            pagination={"limit": limit, "hasMore": has_more, "nextBefore": rows[-1].pk if has_more else None},
        )

    @extend_schema(
        operation_id="chats_messages_send", request=InputSerializer, responses={202: MessageOutputSerializer}
    )
    def post(self, request: Request, pk: int) -> Response:
        workspace = request_workspace(request)
        chat = access_chat(user=request.user, chat_id=pk, workspace=workspace)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        reply_to = None
        if fields.get("reply_to") is not None:
            reply_to = Message.objects.filter(chat=chat, pk=fields["reply_to"]).first()
            if reply_to is None:
                refusal = "You can only reply to a message in the same chat."
                raise ApiError(refusal, code="validation_error", fields={"reply_to": [refusal]})
        try:
            with transaction.atomic(durable=True):
                sent = message_send(
                    chat=chat,
                    sender=request.user,
                    client_message_id=fields["client_message_id"],
                    text=fields["text"],
                    type=fields["type"],
                    media_url=fields["media_url"],
                    filename=fields["filename"],
                    caption=fields["caption"],
                    template=dict(fields["template"]) if fields.get("template") else None,
                    reply_to=reply_to,
                )
        except InboxError as error:
            raise _inbox_error(error) from None
        message = _messages(Message.objects.filter(pk=sent.pk)).get()
        return Response(MessageOutputSerializer(message).data, status=202)


class MessageDetailApi(APIView):
    @extend_schema(operation_id="messages_retrieve", responses=MessageDetailOutputSerializer)
    def get(self, request: Request, pk: int) -> Response:
        found = access_message(user=request.user, message_id=pk, workspace=request_workspace(request))
        message = _messages(Message.objects.filter(pk=found.pk)).prefetch_related("events").get()
        return Response(MessageDetailOutputSerializer(message).data)
