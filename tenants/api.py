"""REST API v1: the workspace's members (admins only)."""

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

from tenants.api_envelope import ApiError, PageLimitPagination
from tenants.models import Membership, Workspace
from tenants.permissions import IsWorkspaceAdmin, request_workspace
from tenants.services import (
    TenantError,
    membership_add,
    membership_is_last_admin,
    membership_remove,
    membership_set_role,
    user_get_or_create,
)


def access_member(*, workspace: Workspace, membership_id: Any, for_write: bool = False) -> Membership:
    """A membership of this workspace, else 404 (another workspace's member does not exist here)."""
    qs = Membership.objects.filter(workspace=workspace).select_related("user", "workspace")
    if for_write:
        qs = qs.select_for_update(no_key=True, of=("self",))
    try:
        return qs.get(pk=membership_id)
    except (Membership.DoesNotExist, ValueError, TypeError, ValidationError):
        raise Http404("No such member") from None


class MemberOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    user_id = serializers.IntegerField()
    email = serializers.EmailField(source="user.email")
    name = serializers.SerializerMethodField()
    role = serializers.ChoiceField(choices=Membership.Role.choices)
    created_at = serializers.DateTimeField()

    def get_name(self, membership: Membership) -> str:
        return str(membership.user.get_full_name() or "")


class MemberListCreateApi(APIView):
    permission_classes = [IsWorkspaceAdmin]
    pagination_class = PageLimitPagination

    class InputSerializer(serializers.Serializer):
        email = serializers.EmailField()
        role = serializers.ChoiceField(choices=Membership.Role.choices, default=Membership.Role.AGENT)
        password = serializers.CharField(
            required=False,
            write_only=True,
            min_length=8,
            max_length=128,
            help_text="Only for someone without an account yet (at least 8 characters).",
        )

    @extend_schema(operation_id="members_list", responses=MemberOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        workspace = request_workspace(request)
        members = (
            Membership.objects.filter(workspace=workspace)
            .select_related("user")
            .order_by("user__email", "id")
        )
        paginator = PageLimitPagination()
        page = paginator.paginate_queryset(members, request, view=self)
        return paginator.get_paginated_response(MemberOutputSerializer(page, many=True).data)

    @extend_schema(
        operation_id="members_create", request=InputSerializer, responses={201: MemberOutputSerializer}
    )
    def post(self, request: Request) -> Response:
        workspace = request_workspace(request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            with transaction.atomic(durable=True):
                user, _ = user_get_or_create(
                    email=data.validated_data["email"], password=data.validated_data.get("password")
                )
                membership = membership_add(
                    workspace=workspace, user=user, role=data.validated_data["role"], actor=request.user
                )
        except TenantError as error:
            field = "password" if "password" in str(error) else "email"
            raise ApiError(str(error), code="member_refused", fields={field: [str(error)]}) from None
        return Response(MemberOutputSerializer(membership).data, status=201)


class MemberDetailApi(APIView):
    permission_classes = [IsWorkspaceAdmin]

    class InputSerializer(serializers.Serializer):
        role = serializers.ChoiceField(choices=Membership.Role.choices)

    @extend_schema(operation_id="members_retrieve", responses=MemberOutputSerializer)
    def get(self, request: Request, pk: int) -> Response:
        membership = access_member(workspace=request_workspace(request), membership_id=pk)
        return Response(MemberOutputSerializer(membership).data)

    @extend_schema(operation_id="members_update", request=InputSerializer, responses=MemberOutputSerializer)
    def patch(self, request: Request, pk: int) -> Response:
        workspace = request_workspace(request)
        access_member(workspace=workspace, membership_id=pk)  # another workspace's member: 404 before 400
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        role = data.validated_data["role"]
        with transaction.atomic(durable=True):
            membership = access_member(workspace=workspace, membership_id=pk, for_write=True)
            if role != Membership.Role.ADMIN and membership_is_last_admin(membership=membership):
                raise ApiError(
                    "A workspace needs at least one admin: make someone else admin first.",
                    code="last_admin",
                    fields={"role": ["The last admin cannot be demoted."]},
                )
            membership_set_role(membership=membership, role=role, actor=request.user)
        return Response(MemberOutputSerializer(membership).data)

    @extend_schema(operation_id="members_destroy", responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        workspace = request_workspace(request)
        try:
            with transaction.atomic(durable=True):
                membership = access_member(workspace=workspace, membership_id=pk, for_write=True)
                membership_remove(membership=membership, actor=request.user)
        except TenantError as error:
            raise ApiError(str(error), code="last_admin") from None
        return Response(status=204)
