"""REST API v1: event subscriptions (outgoing webhooks), admins only.

The signing secret is in the answer to create and rotate-secret, and nowhere else, ever.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from outbox.models import EventSubscription
from outbox.subscriptions import (
    EVENT_TYPES,
    SubscriptionError,
    subscription_create,
    subscription_delete,
    subscription_rotate_secret,
    subscription_update,
)
from tenants.api_envelope import ApiError, PageLimitPagination
from tenants.models import Workspace
from tenants.permissions import IsWorkspaceAdmin, request_workspace


def access_subscription(*, workspace: Workspace, subscription_id: Any) -> EventSubscription:
    try:
        return EventSubscription.objects.select_related("workspace").get(
            pk=subscription_id, workspace=workspace
        )
    except (EventSubscription.DoesNotExist, ValueError, TypeError, ValidationError):
        raise Http404("No such subscription") from None


class SubscriptionOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.URLField()
    event_types = serializers.ListField(child=serializers.ChoiceField(choices=EVENT_TYPES))
    description = serializers.CharField()
    active = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class SubscriptionWithSecretOutputSerializer(SubscriptionOutputSerializer):
    secret = serializers.CharField(help_text="The signing secret. Shown this once: store it now.")


def _with_secret(subscription: EventSubscription, secret: str) -> dict[str, Any]:
    return {**SubscriptionOutputSerializer(subscription).data, "secret": secret}


def _refused(error: SubscriptionError) -> ApiError:
    return ApiError(
        str(error), code="subscription_refused", fields={error.field: [str(error)]} if error.field else {}
    )


class SubscriptionListCreateApi(APIView):
    permission_classes = [IsWorkspaceAdmin]
    pagination_class = PageLimitPagination

    class InputSerializer(serializers.Serializer):
        url = serializers.URLField(max_length=2000)
        event_types = serializers.ListField(
            child=serializers.ChoiceField(choices=EVENT_TYPES), min_length=1, max_length=len(EVENT_TYPES)
        )
        description = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
        active = serializers.BooleanField(required=False, default=True)

    @extend_schema(operation_id="subscriptions_list", responses=SubscriptionOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        subscriptions = EventSubscription.objects.filter(workspace=request_workspace(request)).order_by("id")
        paginator = PageLimitPagination()
        page = paginator.paginate_queryset(subscriptions, request, view=self)
        return paginator.get_paginated_response(SubscriptionOutputSerializer(page, many=True).data)

    @extend_schema(
        operation_id="subscriptions_create",
        request=InputSerializer,
        responses={201: SubscriptionWithSecretOutputSerializer},
    )
    def post(self, request: Request) -> Response:
        workspace = request_workspace(request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        try:
            with transaction.atomic(durable=True):
                issued = subscription_create(
                    workspace=workspace,
                    url=fields["url"],
                    event_types=fields["event_types"],
                    description=fields.get("description", ""),
                    actor=request.user,
                )
                if not fields.get("active", True):
                    subscription_update(subscription=issued.subscription, active=False, actor=request.user)
        except SubscriptionError as error:
            raise _refused(error) from None
        return Response(_with_secret(issued.subscription, issued.secret), status=201)


class SubscriptionDetailApi(APIView):
    permission_classes = [IsWorkspaceAdmin]

    class InputSerializer(serializers.Serializer):
        url = serializers.URLField(max_length=2000, required=False)
        event_types = serializers.ListField(
            child=serializers.ChoiceField(choices=EVENT_TYPES),
            min_length=1,
            max_length=len(EVENT_TYPES),
            required=False,
        )
        description = serializers.CharField(max_length=200, required=False, allow_blank=True)
        active = serializers.BooleanField(required=False)

    @extend_schema(operation_id="subscriptions_retrieve", responses=SubscriptionOutputSerializer)
    def get(self, request: Request, pk: int) -> Response:
        subscription = access_subscription(workspace=request_workspace(request), subscription_id=pk)
        return Response(SubscriptionOutputSerializer(subscription).data)

    @extend_schema(
        operation_id="subscriptions_update", request=InputSerializer, responses=SubscriptionOutputSerializer
    )
    def patch(self, request: Request, pk: int) -> Response:
        subscription = access_subscription(workspace=request_workspace(request), subscription_id=pk)
        data = self.InputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        try:
            with transaction.atomic(durable=True):
                subscription_update(subscription=subscription, actor=request.user, **data.validated_data)
        except SubscriptionError as error:
            raise _refused(error) from None
        return Response(SubscriptionOutputSerializer(subscription).data)

    @extend_schema(operation_id="subscriptions_destroy", responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        subscription = access_subscription(workspace=request_workspace(request), subscription_id=pk)
        with transaction.atomic(durable=True):
            subscription_delete(subscription=subscription, actor=request.user)
        return Response(status=204)


class SubscriptionRotateSecretApi(APIView):
    permission_classes = [IsWorkspaceAdmin]

    @extend_schema(
        operation_id="subscriptions_rotate_secret",
        request=None,
        responses=SubscriptionWithSecretOutputSerializer,
    )
    def post(self, request: Request, pk: int) -> Response:
        subscription = access_subscription(workspace=request_workspace(request), subscription_id=pk)
        with transaction.atomic(durable=True):
            issued = subscription_rotate_secret(subscription=subscription, actor=request.user)
        return Response(_with_secret(issued.subscription, issued.secret))
