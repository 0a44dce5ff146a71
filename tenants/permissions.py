"""Roles for the REST API: every endpoint needs a member of an active workspace; some need an admin.

The request's workspace is the token's (bearer) or the session's chosen one; ``request_membership``
is the one place that decides it. Another workspace's objects are then a 404 (the access_* helpers),
never a 403: 403 only ever means "your role can't do this here".
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from tenants.authentication import TokenAuth
from tenants.models import Membership, Workspace


def request_membership(request: Request) -> Membership | None:
    if not getattr(request.user, "is_authenticated", False):
        return None
    if isinstance(request.auth, TokenAuth):
        return request.auth.membership
    # Session callers: set by CurrentWorkspaceMiddleware on the underlying HttpRequest.
    return getattr(request._request, "membership", None)


def request_workspace(request: Request) -> Workspace:
    """The workspace this request acts in (call after the permission check)."""
    membership = request_membership(request)
    if membership is None:  # pragma: no cover - IsWorkspaceMember refuses first
        raise PermissionDenied("Choose a workspace first.")
    return membership.workspace


class IsWorkspaceMember(BasePermission):
    message = "You are not a member of an active workspace."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not getattr(request.user, "is_authenticated", False):
            return False  # DRF answers 401 (the bearer authenticator names a WWW-Authenticate scheme)
        membership = request_membership(request)
        if membership is None:
            raise PermissionDenied("Choose a workspace first (you belong to several).")
        if not membership.workspace.is_active:
            raise PermissionDenied("This workspace is suspended.")
        return True


class IsWorkspaceAdmin(IsWorkspaceMember):
    message = "Only workspace admins can do this."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not super().has_permission(request, view):
            return False
        membership = request_membership(request)
        return membership is not None and membership.is_admin
