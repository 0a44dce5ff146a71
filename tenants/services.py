"""Writes for workspaces, members, API tokens and the audit log."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from tenants.models import ApiToken, AuditLog, Membership, Workspace

API_TOKEN_PREFIX = "wai_"


class TenantError(Exception):
    """A refused tenant operation, with a message fit to show the person who asked."""


def audit_record(
    *,
    action: str,
    workspace: Workspace | None = None,
    actor: Any = None,
    target: Any = None,
    data: dict[str, Any] | None = None,
    ip_address: str | None = None,
) -> AuditLog:
    return AuditLog.objects.create(
        workspace=workspace,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        action=action,
        target_type=target.__class__.__name__.lower() if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        data=data or {},
        ip_address=ip_address,
    )


def _unique_slug(name: str) -> str:
    base = slugify(name)[:120] or "workspace"
    slug, n = base, 2
    while Workspace.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


def _validated_email(email: str) -> str:
    email = (email or "").strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise TenantError(f"not a valid email address: {email!r}") from None
    return email


def user_get_or_create(*, email: str, password: str | None = None) -> tuple[Any, bool]:
    User = get_user_model()
    email = _validated_email(email)
    user = User.objects.filter(email__iexact=email).first()
    if user is not None:
        return user, False
    if not password or len(password) < 8:
        raise TenantError("a new user needs a password of at least 8 characters")
    user = User.objects.create_user(username=email, email=email, password=password)
    return user, True


def workspace_create(*, name: str, admin_email: str, admin_password: str | None) -> tuple[Workspace, Any]:
    name = (name or "").strip()
    if not name:
        raise TenantError("a workspace needs a name")
    with transaction.atomic(savepoint=False):
        workspace = Workspace.objects.create(name=name, slug=_unique_slug(name))
        user, _ = user_get_or_create(email=admin_email, password=admin_password)
        membership_add(workspace=workspace, user=user, role=Membership.Role.ADMIN)
        audit_record(action="workspace.created", workspace=workspace, target=workspace)
    return workspace, user


def membership_add(*, workspace: Workspace, user: Any, role: str, actor: Any = None) -> Membership:
    if role not in Membership.Role.values:
        raise TenantError(f"unknown role {role!r}: use one of {', '.join(Membership.Role.values)}")
    if workspace.memberships.count() >= workspace.max_members:
        raise TenantError(
            f"workspace {workspace.name!r} has reached its plan limit of {workspace.max_members} people"
        )
    try:
        with transaction.atomic():
            membership = Membership.objects.create(workspace=workspace, user=user, role=role)
    except IntegrityError:
        raise TenantError(f"{user.email} is already a member of {workspace.name}") from None
    if role == Membership.Role.ADMIN and not user.is_staff:
        # Workspace admins manage their workspace in Django admin; staff is what lets them in.
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    audit_record(
        action="member.added", workspace=workspace, actor=actor, target=membership, data={"role": role}
    )
    return membership


def membership_set_role(*, membership: Membership, role: str, actor: Any = None) -> Membership:
    if role not in Membership.Role.values:
        raise TenantError(f"unknown role {role!r}")
    previous = membership.role
    if previous == role:
        return membership
    membership.role = role
    membership.save(update_fields=["role"])
    user = membership.user
    if role == Membership.Role.ADMIN and not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    audit_record(
        action="member.role_changed",
        workspace=membership.workspace,
        actor=actor,
        target=membership,
        data={"from": previous, "to": role},
    )
    return membership


def hash_api_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class IssuedApiToken:
    api_token: ApiToken
    token: str  # the only time the plaintext exists


def apitoken_create(*, workspace: Workspace, user: Any, name: str = "", actor: Any = None) -> IssuedApiToken:
    if not Membership.objects.filter(workspace=workspace, user=user).exists():
        raise TenantError(f"{user.email} is not a member of {workspace.name}")
    token = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    api_token = ApiToken.objects.create(
        workspace=workspace, user=user, name=name, prefix=token[:10], token_hash=hash_api_token(token)
    )
    audit_record(action="apitoken.created", workspace=workspace, actor=actor or user, target=api_token)
    return IssuedApiToken(api_token=api_token, token=token)


def apitoken_revoke(*, api_token: ApiToken, actor: Any = None) -> None:
    if api_token.revoked_at is None:
        api_token.revoked_at = timezone.now()
        api_token.save(update_fields=["revoked_at"])
        audit_record(action="apitoken.revoked", workspace=api_token.workspace, actor=actor, target=api_token)


def workspace_set_status(*, workspace: Workspace, status: str, actor: Any = None) -> Workspace:
    if status not in Workspace.Status.values:
        raise TenantError(f"unknown status {status!r}")
    if workspace.status != status:
        workspace.status = status
        workspace.save(update_fields=["status"])
        audit_record(action=f"workspace.{status}", workspace=workspace, actor=actor, target=workspace)
    return workspace


def membership_is_last_admin(*, membership: Membership) -> bool:
    """Whether taking this admin away would leave the workspace with nobody to manage it."""
    return (
        membership.is_admin
        and not Membership.objects.filter(workspace_id=membership.workspace_id, role=Membership.Role.ADMIN)
        .exclude(pk=membership.pk)
        .exists()
    )


def membership_remove(*, membership: Membership, actor: Any = None) -> None:
    """Take someone out of a workspace: their API tokens for it stop working at once and the chats
    assigned to them go back to the team (unassigned)."""
    from inbox.services.chats import chats_unassign_member  # inbox builds on tenants: import late

    if membership_is_last_admin(membership=membership):
        raise TenantError("a workspace needs at least one admin: make someone else admin first")
    with transaction.atomic(savepoint=False):
        now = timezone.now()
        chats_unassign_member(
            workspace_id=membership.workspace_id, user_id=membership.user_id, acting_user=actor
        )
        ApiToken.objects.filter(
            workspace_id=membership.workspace_id, user_id=membership.user_id, revoked_at__isnull=True
        ).update(revoked_at=now)
        audit_record(
            action="member.removed",
            workspace=membership.workspace,
            actor=actor,
            target=membership,
            data={"user_id": membership.user_id, "role": membership.role},
        )
        membership.delete()
