from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.html import format_html

from tenants.scoped_admin import WorkspaceScopedAdmin
from tenants.services import audit_record
from webhooks.models import WebhookEvent
from webhooks.services import webhook_events_replay


@admin.register(WebhookEvent)
class WebhookEventAdmin(WorkspaceScopedAdmin):
    workspace_field = "channel__workspace_id"
    list_display = (
        "id",
        "provider",
        "channel",
        "event_type",
        "status",
        "attempts",
        "received_at",
        "processed_at",
    )
    list_filter = ("provider", "status", "event_type", "signature_valid")
    search_fields = ("correlation_id", "last_error")
    list_select_related = ("channel",)
    exclude = ("raw_body",)
    readonly_fields = (
        "provider",
        "channel",
        "event_type",
        "status",
        "signature_valid",
        "attempts",
        "next_attempt_at",
        "lease_expires_at",
        "last_error",
        "correlation_id",
        "received_at",
        "processed_at",
        "headers",
        "body",
    )
    date_hierarchy = "received_at"
    actions = ["replay_events"]

    @admin.display(description="Raw body")
    def body(self, obj: WebhookEvent) -> str:
        return format_html("<pre style='white-space:pre-wrap;max-width:80ch'>{}</pre>", obj.body_text)

    def has_add_permission(self, request, *args):  # type: ignore[no-untyped-def]
        return False

    @admin.action(description="Replay selected events (idempotent)", permissions=["change"])
    def replay_events(self, request: HttpRequest, queryset: QuerySet[WebhookEvent]) -> None:
        # ``queryset`` is already scoped to the admin's workspaces (WorkspaceScopedAdmin.get_queryset).
        with transaction.atomic(durable=True):
            queued = webhook_events_replay(events=queryset)
            audit_record(
                action="webhook.replayed",
                workspace=getattr(request, "workspace", None),
                actor=request.user,
                data={"event_ids": list(queryset.values_list("pk", flat=True)[:100]), "count": queued},
            )
        skipped = queryset.count() - queued
        self.message_user(request, f"{queued} event(s) queued for processing.", messages.SUCCESS)
        if skipped > 0:
            self.message_user(request, f"{skipped} event(s) are being processed right now.", messages.WARNING)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # Another workspace's event is a 404 (Django's default is a redirect with "doesn't exist").
        if self.get_object(request, unquote(object_id)) is None:
            raise Http404("No such webhook event")
        return super().change_view(request, object_id, form_url, extra_context)
