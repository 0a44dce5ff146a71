"""Django admin scoped to the workspaces a staff user administers.

Superusers see everything. A workspace admin (staff, with an ``admin`` Membership) sees and edits
only rows that belong to their active workspaces: querysets, foreign-key choices and actions
(actions run on the scoped queryset) all go through ``admin_workspace_ids``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from tenants.models import Membership, Workspace


def admin_workspace_ids(user: Any) -> list[Any]:
    if not getattr(user, "is_authenticated", False) or not user.is_staff:
        return []
    return list(
        Membership.objects.filter(
            user=user, role=Membership.Role.ADMIN, workspace__status=Workspace.Status.ACTIVE
        ).values_list("workspace_id", flat=True)
    )


def is_workspace_admin(user: Any) -> bool:
    return bool(admin_workspace_ids(user))


def _cached_workspace_ids(request: HttpRequest) -> list[Any]:
    cached = getattr(request, "_admin_workspace_ids", None)
    if cached is None:
        cached = admin_workspace_ids(request.user)
        request._admin_workspace_ids = cached  # type: ignore[attr-defined]
    return cached


class WorkspaceScopedAdmin(admin.ModelAdmin):
    """Subclasses name the path from their model to its workspace id, e.g. ``"chat__workspace_id"``."""

    workspace_field: str = "workspace_id"
    # Workspace admins may only look at these models (audit log, raw webhooks…), never change them.
    read_only_for_workspace_admins: bool = False

    def scope_queryset(self, request: HttpRequest, qs: QuerySet[Any], field: str) -> QuerySet[Any]:
        if request.user.is_superuser:
            return qs
        return qs.filter(**{f"{field}__in": _cached_workspace_ids(request)})

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return self.scope_queryset(request, super().get_queryset(request), self.workspace_field)

    def get_list_filter(self, request: HttpRequest) -> Any:
        """Foreign-key filters list only the admin's own workspaces' rows (not every tenant's names)."""
        scoped: list[Any] = []
        for item in super().get_list_filter(request):
            if isinstance(item, str) and "__" not in item:
                field = self.model._meta.get_field(item)
                if field.is_relation and field.many_to_one:
                    scoped.append((item, ScopedRelatedFieldListFilter))
                    continue
            scoped.append(item)
        return scoped

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if field is not None and field.queryset is not None and not request.user.is_superuser:
            field.queryset = scope_choices(request, field.queryset)
        return field

    # Permissions: workspace admins get the model permissions implicitly; objects are checked
    # against the scoped queryset so a guessed URL of another workspace's row is refused.
    def _allowed(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser or _cached_workspace_ids(request))

    def _in_scope(self, request: HttpRequest, obj: Model | None) -> bool:
        if obj is None or request.user.is_superuser:
            return True
        return self.get_queryset(request).filter(pk=obj.pk).exists()

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._allowed(request)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._allowed(request) and self._in_scope(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if self.read_only_for_workspace_admins and not request.user.is_superuser:
            return False
        return self._allowed(request) and self._in_scope(request, obj)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        if self.read_only_for_workspace_admins and not request.user.is_superuser:
            return False
        return self._allowed(request)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if self.read_only_for_workspace_admins and not request.user.is_superuser:
            return False
        return self._allowed(request) and self._in_scope(request, obj)


# How to reach the workspace from a foreign key's target model (filled by each app's admin).
FOREIGN_KEY_WORKSPACE_PATHS: dict[Any, str] = {Workspace: "id"}


def register_workspace_path(model: Any, path: str) -> None:
    FOREIGN_KEY_WORKSPACE_PATHS[model] = path


def scope_choices(request: HttpRequest, qs: QuerySet[Any]) -> QuerySet[Any]:
    """Foreign-key choices limited to the admin's workspaces (a subquery, so to-many paths don't repeat rows)."""
    path = FOREIGN_KEY_WORKSPACE_PATHS.get(qs.model)
    if path is None:
        return qs.none()
    in_scope = qs.model._default_manager.filter(**{f"{path}__in": _cached_workspace_ids(request)})
    return qs.filter(pk__in=in_scope.values("pk"))


class ScopedRelatedFieldListFilter(admin.RelatedFieldListFilter):
    def field_choices(self, field: Any, request: HttpRequest, model_admin: Any) -> Any:
        if request.user.is_superuser:
            return super().field_choices(field, request, model_admin)
        allowed = scope_choices(request, field.related_model._default_manager.all())
        return field.get_choices(include_blank=False, limit_choices_to={"pk__in": allowed.values("pk")})


class ScopedInline(admin.TabularInline):
    workspace_field: str = "workspace_id"

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if field is not None and field.queryset is not None and not request.user.is_superuser:
            field.queryset = scope_choices(request, field.queryset)
        return field

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return bool(request.user.is_superuser or _cached_workspace_ids(request))

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self.has_view_permission(request, obj)

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self.has_view_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self.has_view_permission(request, obj)
