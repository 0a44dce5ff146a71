from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import HttpRequest

from tenants.models import ApiToken, AuditLog, Membership, Workspace
from tenants.scoped_admin import ScopedInline, WorkspaceScopedAdmin, register_workspace_path
from tenants.services import (
    TenantError,
    apitoken_revoke,
    membership_add,
    membership_remove,
    membership_set_role,
    user_get_or_create,
)

register_workspace_path(get_user_model(), "memberships__workspace_id")


class MembershipInline(ScopedInline):
    model = Membership
    extra = 0
    fields = ("user", "role", "created_at")
    readonly_fields = ("user", "created_at")
    can_delete = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # people are added from the Membership page, which can create their account


def _remove_members(request: HttpRequest, memberships: list[Membership]) -> None:
    """Removing people from the admin goes through the service like everywhere else: tokens revoked,
    their chats unassigned, audited, and never the last admin."""
    for membership in memberships:
        try:
            membership_remove(membership=membership, actor=request.user)
        except TenantError as exc:
            messages.error(request, f"{membership.user}: {exc}")


@admin.register(Workspace)
class WorkspaceAdmin(WorkspaceScopedAdmin):
    workspace_field = "id"
    list_display = ("name", "slug", "status", "member_count", "channel_count", "created_at")
    list_filter = ("status", "theme_mode")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [MembershipInline]
    superuser_only_fields = ("status", "max_channels", "max_members", "slug")

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if formset.model is not Membership:
            super().save_formset(request, form, formset, change)
            return
        formset.save(commit=False)  # collects deleted_objects; role edits are saved below
        _remove_members(request, list(formset.deleted_objects))
        for membership, _changed in formset.changed_objects:
            try:
                membership_set_role(
                    membership=Membership.objects.get(pk=membership.pk),
                    role=membership.role,
                    actor=request.user,
                )
            except TenantError as exc:
                messages.error(request, f"{membership.user}: {exc}")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        from django.db.models import Count

        return (
            super()
            .get_queryset(request)
            .annotate(
                _members=Count("memberships", distinct=True), _channels=Count("channels", distinct=True)
            )
        )

    @admin.display(description="People", ordering="_members")
    def member_count(self, obj: Any) -> int:
        return obj._members

    @admin.display(description="Numbers", ordering="_channels")
    def channel_count(self, obj: Any) -> int:
        return obj._channels

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if request.user.is_superuser:
            return ()
        return self.superuser_only_fields

    def get_prepopulated_fields(self, request: HttpRequest, obj: Any = None) -> dict[str, Any]:
        return self.prepopulated_fields if request.user.is_superuser else {}

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser


class MembershipAddForm(forms.ModelForm):
    email = forms.EmailField(help_text="An existing account is reused; otherwise one is created.")
    password = forms.CharField(
        widget=forms.PasswordInput(render_value=False), required=False, help_text="Needed for a new account."
    )

    class Meta:
        model = Membership
        fields = ("workspace", "email", "password", "role")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        workspace, email = data.get("workspace"), (data.get("email") or "").lower()
        if not workspace or not email:
            return data
        user = get_user_model().objects.filter(email__iexact=email).first()
        if user is None and len(data.get("password") or "") < 8:
            self.add_error("password", "A new account needs a password of at least 8 characters.")
        if user is not None and Membership.objects.filter(workspace=workspace, user=user).exists():
            self.add_error("email", f"{email} is already a member of {workspace.name}.")
        if workspace.memberships.count() >= workspace.max_members:
            self.add_error(
                "workspace", f"{workspace.name} has reached its plan limit of {workspace.max_members} people."
            )
        return data


@admin.register(Membership)
class MembershipAdmin(WorkspaceScopedAdmin):
    list_display = ("user_email", "workspace", "role", "created_at")
    list_filter = ("role", "workspace")
    search_fields = ("user__email", "user__username", "workspace__name")
    list_select_related = ("user", "workspace")
    actions = ["make_admin", "make_agent"]

    @admin.display(description="Email", ordering="user__email")
    def user_email(self, obj: Membership) -> str:
        return obj.user.email or obj.user.get_username()

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = MembershipAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("workspace", "email", "password", "role") if obj is None else ("workspace", "user", "role")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("workspace", "user") if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: Membership, form: Any, change: bool) -> None:
        try:
            if change:
                membership_set_role(
                    membership=Membership.objects.get(pk=obj.pk),
                    role=form.cleaned_data["role"],
                    actor=request.user,
                )
            else:
                user, _ = user_get_or_create(
                    email=form.cleaned_data["email"], password=form.cleaned_data.get("password")
                )
                created = membership_add(
                    workspace=form.cleaned_data["workspace"],
                    user=user,
                    role=form.cleaned_data["role"],
                    actor=request.user,
                )
                obj.pk, obj.user, obj.workspace = created.pk, created.user, created.workspace
        except TenantError as exc:
            # ModelAdmin has no clean failure path from save_model; show the reason instead of a 500.
            self.message_user(request, str(exc), level=messages.ERROR)

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        _remove_members(request, [obj])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Membership]) -> None:
        _remove_members(request, list(queryset))

    @admin.action(description="Make admin")
    def make_admin(self, request: HttpRequest, queryset: QuerySet[Membership]) -> None:
        for membership in queryset:
            membership_set_role(membership=membership, role=Membership.Role.ADMIN, actor=request.user)

    @admin.action(description="Make agent")
    def make_agent(self, request: HttpRequest, queryset: QuerySet[Membership]) -> None:
        for membership in queryset:
            membership_set_role(membership=membership, role=Membership.Role.AGENT, actor=request.user)


@admin.register(ApiToken)
class ApiTokenAdmin(WorkspaceScopedAdmin):
    list_display = ("prefix", "name", "user", "workspace", "created_at", "last_used_at", "revoked_at")
    list_filter = ("workspace", "revoked_at")
    search_fields = ("prefix", "name", "user__email")
    fields = ("prefix", "name", "user", "workspace", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False  # tokens are issued by `manage.py apitoken_create` or the API: shown once, there

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for token in queryset:
            apitoken_revoke(api_token=token, actor=request.user)


@admin.register(AuditLog)
class AuditLogAdmin(WorkspaceScopedAdmin):
    list_display = ("created_at", "action", "actor", "workspace", "target_type", "target_id", "ip_address")
    list_filter = ("action", "workspace", "target_type")
    search_fields = ("action", "target_id", "actor__email")
    date_hierarchy = "created_at"
    readonly_fields = (
        "created_at",
        "action",
        "actor",
        "workspace",
        "target_type",
        "target_id",
        "data",
        "ip_address",
    )

    # Append-only, for everyone.
    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
