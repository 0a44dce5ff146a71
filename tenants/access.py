"""Every tenant-owned lookup starts here: a user sees only the active workspaces they belong to."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404

from tenants.models import Membership, Workspace


def member_workspace_ids(*, user: Any) -> QuerySet[Membership, Any]:
    """Ids of the active workspaces the user belongs to (a subquery, not a list)."""
    if not getattr(user, "is_authenticated", False):
        return Membership.objects.none().values("workspace_id")
    return Membership.objects.filter(user=user, workspace__status=Workspace.Status.ACTIVE).values(
        "workspace_id"
    )


def memberships_for_user(*, user: Any) -> QuerySet[Membership]:
    if not getattr(user, "is_authenticated", False):
        return Membership.objects.none()
    return Membership.objects.filter(user=user).select_related("workspace").order_by("workspace__name")


def access_membership(*, user: Any, workspace_id: Any) -> Membership:
    try:
        return memberships_for_user(user=user).get(workspace_id=workspace_id)
    except (Membership.DoesNotExist, ValueError, TypeError, ValidationError):
        raise Http404("No such workspace") from None


def access_workspace(*, user: Any, workspace_id: Any, admin: bool = False) -> Workspace:
    membership = access_membership(user=user, workspace_id=workspace_id)
    if not membership.workspace.is_active:
        raise Http404("No such workspace")
    if admin and not membership.is_admin:
        raise Http404("No such workspace")
    return membership.workspace
