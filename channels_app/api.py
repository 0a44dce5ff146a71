"""REST API v1: WhatsApp numbers. Everyone reads; admins create, change, pause and resume.

Tokens are write-only: the API says which token types a number has, never a value.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from channels_app.access import access_channel
from channels_app.models import Channel
from channels_app.selectors import channel_webhook_url
from channels_app.services import (
    ChannelError,
    channel_create,
    channel_pause,
    channel_resume,
    channel_token_set,
    channel_token_types,
    channel_update,
)
from tenants.api_envelope import ApiError, PageLimitPagination
from tenants.permissions import IsWorkspaceAdmin, IsWorkspaceMember, request_workspace


class ChannelOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    provider = serializers.ChoiceField(choices=Channel.Provider.choices)
    display_name = serializers.CharField()
    phone_number = serializers.CharField()
    meta_phone_number_id = serializers.CharField()
    whapi_channel_id = serializers.CharField()
    status = serializers.ChoiceField(choices=Channel.Status.choices)
    status_detail = serializers.CharField()
    api_base_url = serializers.CharField()
    rate_limit_per_second = serializers.FloatField(allow_null=True)
    effective_rate_limit = serializers.FloatField()
    paused_until = serializers.DateTimeField(allow_null=True)
    last_inbound_at = serializers.DateTimeField(allow_null=True)
    last_sent_at = serializers.DateTimeField(allow_null=True)
    token_types = serializers.SerializerMethodField(help_text="Which tokens are stored (never their values).")
    webhook_url = serializers.SerializerMethodField(
        help_text="Where the provider must POST this number's events."
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_token_types(self, channel: Channel) -> list[str]:
        return channel_token_types(channel=channel)

    def get_webhook_url(self, channel: Channel) -> str:
        return channel_webhook_url(channel)


class ChannelTokensInputSerializer(serializers.Serializer):
    """Write-only secrets; an omitted or empty one is left as it is."""

    api_token = serializers.CharField(required=False, allow_blank=True, write_only=True, max_length=4096)
    app_secret = serializers.CharField(required=False, allow_blank=True, write_only=True, max_length=4096)
    verify_token = serializers.CharField(required=False, allow_blank=True, write_only=True, max_length=4096)
    webhook_secret = serializers.CharField(required=False, allow_blank=True, write_only=True, max_length=4096)


def _channel_error(error: ChannelError) -> ApiError:
    message = str(error)
    field = next(
        (
            name
            for name, words in (
                ("provider", "provider"),
                ("display_name", "name"),
                ("phone_number", "phone number"),
                ("meta_phone_number_id", "phone_number_id"),
                ("rate_limit_per_second", "rate limit"),
            )
            if words in message
        ),
        "",
    )
    return ApiError(message, code="channel_refused", fields={field: [message]} if field else {})


def _set_tokens(*, channel: Channel, tokens: dict[str, str], actor: Any) -> None:
    for token_type, value in tokens.items():
        if value:
            channel_token_set(channel=channel, token_type=token_type, value=value, actor=actor)


class ChannelListCreateApi(APIView):
    pagination_class = PageLimitPagination

    def get_permissions(self) -> list[Any]:
        return [IsWorkspaceAdmin()] if self.request.method == "POST" else [IsWorkspaceMember()]

    class InputSerializer(serializers.Serializer):
        provider = serializers.ChoiceField(choices=Channel.Provider.choices)
        display_name = serializers.CharField(max_length=120)
        phone_number = serializers.CharField(max_length=32)
        meta_phone_number_id = serializers.CharField(
            max_length=64, required=False, allow_blank=True, default=""
        )
        whapi_channel_id = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
        api_base_url = serializers.URLField(required=False, allow_blank=True, default="", max_length=200)
        rate_limit_per_second = serializers.FloatField(
            required=False, allow_null=True, default=None, min_value=0.01
        )
        tokens = ChannelTokensInputSerializer(required=False)

    @extend_schema(operation_id="channels_list", responses=ChannelOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        channels = Channel.objects.filter(workspace=request_workspace(request)).order_by("display_name", "id")
        paginator = PageLimitPagination()
        page = paginator.paginate_queryset(channels, request, view=self)
        return paginator.get_paginated_response(ChannelOutputSerializer(page, many=True).data)

    @extend_schema(
        operation_id="channels_create", request=InputSerializer, responses={201: ChannelOutputSerializer}
    )
    def post(self, request: Request) -> Response:
        workspace = request_workspace(request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        tokens = fields.pop("tokens", {}) or {}
        try:
            with transaction.atomic(durable=True):
                channel = channel_create(workspace=workspace, tokens=tokens, actor=request.user, **fields)
        except ChannelError as error:
            raise _channel_error(error) from None
        return Response(ChannelOutputSerializer(channel).data, status=201)


class ChannelDetailApi(APIView):
    def get_permissions(self) -> list[Any]:
        return [IsWorkspaceAdmin()] if self.request.method == "PATCH" else [IsWorkspaceMember()]

    class InputSerializer(serializers.Serializer):
        display_name = serializers.CharField(max_length=120, required=False)
        phone_number = serializers.CharField(max_length=32, required=False)
        meta_phone_number_id = serializers.CharField(max_length=64, required=False, allow_blank=True)
        whapi_channel_id = serializers.CharField(max_length=64, required=False, allow_blank=True)
        api_base_url = serializers.URLField(required=False, allow_blank=True, max_length=200)
        rate_limit_per_second = serializers.FloatField(required=False, allow_null=True, min_value=0.01)
        tokens = ChannelTokensInputSerializer(required=False)

        def validate_display_name(self, value: str) -> str:
            if not value.strip():
                raise serializers.ValidationError("A channel needs a name.")
            return value.strip()

        def validate_phone_number(self, value: str) -> str:
            if not value.strip():
                raise serializers.ValidationError("A channel needs a phone number.")
            return value.strip()

    @extend_schema(operation_id="channels_retrieve", responses=ChannelOutputSerializer)
    def get(self, request: Request, pk: str) -> Response:
        channel = access_channel(user=request.user, channel_id=pk, workspace=request_workspace(request))
        return Response(ChannelOutputSerializer(channel).data)

    @extend_schema(operation_id="channels_update", request=InputSerializer, responses=ChannelOutputSerializer)
    def patch(self, request: Request, pk: str) -> Response:
        workspace = request_workspace(request)
        channel = access_channel(user=request.user, channel_id=pk, workspace=workspace)
        data = self.InputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        tokens = fields.pop("tokens", {}) or {}
        new_id = fields.get("meta_phone_number_id")
        if new_id and Channel.objects.filter(meta_phone_number_id=new_id).exclude(pk=channel.pk).exists():
            message = f"phone_number_id {new_id} is already connected"
            raise ApiError(message, code="channel_refused", fields={"meta_phone_number_id": [message]})
        if channel.provider == Channel.Provider.META and fields.get("meta_phone_number_id") == "":
            message = "a Meta channel needs its phone_number_id"
            raise ApiError(message, code="channel_refused", fields={"meta_phone_number_id": [message]})
        try:
            with transaction.atomic(durable=True):
                locked = Channel.objects.select_for_update(no_key=True).get(pk=channel.pk)
                channel_update(channel=locked, actor=request.user, **fields)
                _set_tokens(channel=locked, tokens=tokens, actor=request.user)
        except ChannelError as error:
            raise _channel_error(error) from None
        return Response(ChannelOutputSerializer(locked).data)


class ChannelPauseApi(APIView):
    permission_classes = [IsWorkspaceAdmin]

    class InputSerializer(serializers.Serializer):
        until = serializers.DateTimeField(required=False, allow_null=True, help_text="Resume by itself then.")

    @extend_schema(operation_id="channels_pause", request=InputSerializer, responses=ChannelOutputSerializer)
    def post(self, request: Request, pk: str) -> Response:
        channel = access_channel(user=request.user, channel_id=pk, workspace=request_workspace(request))
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with transaction.atomic(durable=True):
            locked = Channel.objects.select_for_update(no_key=True).get(pk=channel.pk)
            channel_pause(channel=locked, actor=request.user, until=data.validated_data.get("until"))
        return Response(ChannelOutputSerializer(locked).data)


class ChannelResumeApi(APIView):
    permission_classes = [IsWorkspaceAdmin]

    @extend_schema(operation_id="channels_resume", request=None, responses=ChannelOutputSerializer)
    def post(self, request: Request, pk: str) -> Response:
        channel = access_channel(user=request.user, channel_id=pk, workspace=request_workspace(request))
        with transaction.atomic(durable=True):
            locked = Channel.objects.select_for_update(no_key=True).get(pk=channel.pk)
            channel_resume(channel=locked, actor=request.user)
        return Response(ChannelOutputSerializer(locked).data)
