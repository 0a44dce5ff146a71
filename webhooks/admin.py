from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html

from tenants.scoped_admin import WorkspaceScopedAdmin
from webhooks.models import WebhookEvent


@admin.register(WebhookEvent)
class WebhookEventAdmin(WorkspaceScopedAdmin):
    workspace_field = "channel__workspace_id"
    list_display = ("id", "provider", "channel", "event_type", "status", "attempts", "received_at", "processed_at")
    list_filter = ("provider", "status", "event_type", "signature_valid")
    search_fields = ("correlation_id", "last_error")
    list_select_related = ("channel",)
    exclude = ("raw_body",)
    readonly_fields = ("provider", "channel", "event_type", "status", "signature_valid", "attempts",
                       "next_attempt_at", "lease_expires_at", "last_error", "correlation_id", "received_at",
                       "processed_at", "headers", "body")
    date_hierarchy = "received_at"

    @admin.display(description="Raw body")
    def body(self, obj: WebhookEvent) -> str:
        return format_html("<pre style='white-space:pre-wrap;max-width:80ch'>{}</pre>", obj.body_text)

    def has_add_permission(self, request, *args):  # type: ignore[no-untyped-def]
        return False
