from __future__ import annotations

from django.contrib import admin

from outbox.models import OutboxMessage
from tenants.scoped_admin import WorkspaceScopedAdmin


@admin.register(OutboxMessage)
class OutboxMessageAdmin(WorkspaceScopedAdmin):
    workspace_field = "channel__workspace_id"
    list_display = ("id", "channel", "chat", "message_type", "status", "attempts", "priority", "next_attempt_at",
                    "last_error")
    list_filter = ("status", "message_type", "channel")
    search_fields = ("last_error", "message__wa_message_id", "message__client_message_id")
    list_select_related = ("channel", "chat")
    readonly_fields = [f.name for f in OutboxMessage._meta.fields]

    def has_add_permission(self, request, *args):  # type: ignore[no-untyped-def]
        return False
