from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from outbox.models import EventSubscription, OutboxMessage
from outbox.services import OutboxError, outbox_cancel, outbox_retry_now
from outbox.subscriptions import subscription_delete, subscription_update
from tenants.scoped_admin import WorkspaceScopedAdmin


class DueFilter(admin.SimpleListFilter):
    title = "waiting"
    parameter_name = "waiting"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("retrying", "Retrying (failed at least once)"), ("leased", "Sending now")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "retrying":
            return queryset.filter(status=OutboxMessage.Status.QUEUED, attempts__gt=0)
        if self.value() == "leased":
            return queryset.filter(status=OutboxMessage.Status.SENDING)
        return queryset


@admin.register(OutboxMessage)
class OutboxMessageAdmin(WorkspaceScopedAdmin):
    """The outbox, scoped to the admin's workspaces: actions run on the scoped queryset, so another
    workspace's rows can be neither seen nor retried nor cancelled."""

    workspace_field = "channel__workspace_id"
    list_display = (
        "id",
        "channel",
        "chat",
        "message_type",
        "status",
        "attempts",
        "priority",
        "next_attempt_at",
        "last_error_code",
        "last_error",
    )
    list_filter = ("status", DueFilter, "message_type", "last_error_code", "channel")
    search_fields = ("last_error", "message__wa_message_id", "message__client_message_id")
    list_select_related = ("channel", "chat")
    readonly_fields = [f.name for f in OutboxMessage._meta.fields]
    date_hierarchy = "created_at"
    actions = ["retry_now", "cancel"]

    def has_add_permission(self, request, *args):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Rows are history: cancel instead of deleting.
        return bool(request.user.is_superuser) and super().has_delete_permission(request, obj)

    @admin.action(description="Retry now")
    def retry_now(self, request: HttpRequest, queryset: QuerySet[OutboxMessage]) -> None:
        done = self._each(request, queryset, outbox_retry_now)
        if done:
            self.message_user(request, f"{done} row(s) will be sent at the next drain.")

    @admin.action(description="Cancel (do not send)")
    def cancel(self, request: HttpRequest, queryset: QuerySet[OutboxMessage]) -> None:
        done = self._each(request, queryset, outbox_cancel)
        if done:
            self.message_user(request, f"Cancelled {done} row(s).")

    def _each(self, request: HttpRequest, queryset: QuerySet[OutboxMessage], service: Any) -> int:
        """Run the service on every selected row; show each refusal. Returns how many went through."""
        done = 0
        for row in queryset:
            try:
                service(row=row, actor=request.user)
                done += 1
            except OutboxError as exc:
                self.message_user(request, str(exc), level=messages.WARNING)
        return done


@admin.register(EventSubscription)
class EventSubscriptionAdmin(WorkspaceScopedAdmin):
    """Integrators' webhooks. Created (and their secrets rotated) through the API, where the secret is
    shown once; here they can be inspected, paused and removed. The secret is never displayed."""

    list_display = ("url", "workspace", "event_types", "active", "created_at")
    list_filter = ("active", "workspace")
    search_fields = ("url", "description")
    fields = ("workspace", "url", "event_types", "description", "active", "created_at", "updated_at")
    readonly_fields = ("workspace", "url", "event_types", "created_at", "updated_at")
    actions = ["pause", "resume"]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: EventSubscription, form: Any, change: bool) -> None:
        current = EventSubscription.objects.get(pk=obj.pk)
        subscription_update(
            subscription=current,
            actor=request.user,
            description=form.cleaned_data.get("description", ""),
            active=form.cleaned_data.get("active", True),
        )

    def delete_model(self, request: HttpRequest, obj: EventSubscription) -> None:
        subscription_delete(subscription=obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[EventSubscription]) -> None:
        for subscription in queryset:
            subscription_delete(subscription=subscription, actor=request.user)

    @admin.action(description="Pause deliveries")
    def pause(self, request: HttpRequest, queryset: QuerySet[EventSubscription]) -> None:
        for subscription in queryset:
            subscription_update(subscription=subscription, actor=request.user, active=False)

    @admin.action(description="Resume deliveries")
    def resume(self, request: HttpRequest, queryset: QuerySet[EventSubscription]) -> None:
        for subscription in queryset:
            subscription_update(subscription=subscription, actor=request.user, active=True)
