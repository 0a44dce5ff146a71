from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html, format_html_join

from inbox.models import Chat, Contact, Message, MessageReaction
from inbox.selectors import message_timeline
from tenants.scoped_admin import ScopedInline, WorkspaceScopedAdmin, register_workspace_path

register_workspace_path(Chat, "workspace_id")
register_workspace_path(Contact, "channel__workspace_id")
register_workspace_path(Message, "chat__workspace_id")


@admin.register(Contact)
class ContactAdmin(WorkspaceScopedAdmin):
    workspace_field = "channel__workspace_id"
    list_display = ("name", "phone_number", "wa_id", "channel", "created_at")
    list_filter = ("channel",)
    search_fields = ("name", "phone_number", "wa_id")
    list_select_related = ("channel",)


@admin.register(Chat)
class ChatAdmin(WorkspaceScopedAdmin):
    list_display = (
        "display_name",
        "channel",
        "status",
        "assignee",
        "unread_count",
        "last_message_at",
        "is_group",
    )
    list_filter = ("status", "is_group", "channel", "workspace")
    search_fields = ("contact_name", "contact_phone", "wa_chat_id")
    list_select_related = ("channel", "assignee")
    readonly_fields = (
        "workspace",
        "channel",
        "wa_chat_id",
        "contact",
        "last_message_preview",
        "last_message_at",
        "unread_count",
        "window_expires_at",
        "last_read_at",
        "created_at",
        "updated_at",
    )
    date_hierarchy = "last_message_at"


class MessageReactionInline(ScopedInline):
    model = MessageReaction
    extra = 0
    fields = ("emoji", "reactor_wa_id", "reacted_at")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(Message)
class MessageAdmin(WorkspaceScopedAdmin):
    workspace_field = "chat__workspace_id"
    list_display = ("id", "chat", "direction", "type", "status", "short_text", "sort_at")
    list_filter = ("direction", "type", "status", "channel")
    search_fields = ("wa_message_id", "client_message_id", "text")
    list_select_related = ("chat",)
    inlines = [MessageReactionInline]
    read_only_for_workspace_admins = True
    readonly_fields = ["timeline", *[f.name for f in Message._meta.fields]]
    date_hierarchy = "sort_at"

    @admin.display(description="Timeline")
    def timeline(self, obj: Message) -> str:
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    entry.occurred_at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
                    entry.kind,
                    _detail_text(entry.detail),
                )
                for entry in message_timeline(message=obj)
            ),
        )
        return format_html("<table><tr><th>When (UTC)</th><th>Step</th><th>Detail</th></tr>{}</table>", rows)

    @admin.display(description="Text")
    def short_text(self, obj: Message) -> str:
        return (obj.text[:60] + "…") if len(obj.text) > 60 else obj.text

    def has_add_permission(self, request, *args):  # type: ignore[no-untyped-def]
        return False


def _detail_text(detail: dict[str, object]) -> str:
    return ", ".join(f"{key}: {value}" for key, value in detail.items())
