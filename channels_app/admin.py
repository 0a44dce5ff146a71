from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html_join

from channels_app.models import Channel, ChannelToken
from channels_app.services import (
    ChannelError,
    channel_create,
    channel_pause,
    channel_resume,
    channel_token_set,
    channel_token_types,
    channel_update,
)
from tenants.scoped_admin import WorkspaceScopedAdmin, register_workspace_path

register_workspace_path(Channel, "workspace_id")

TOKEN_FIELDS = {
    "new_api_token": ChannelToken.TokenType.API_TOKEN,
    "new_app_secret": ChannelToken.TokenType.APP_SECRET,
    "new_verify_token": ChannelToken.TokenType.VERIFY_TOKEN,
    "new_webhook_secret": ChannelToken.TokenType.WEBHOOK_SECRET,
}


def _write_only(label: str) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only: enter a value to set or replace it; the stored value is never shown.",
    )


class ChannelForm(forms.ModelForm):
    new_api_token = _write_only("API token (Whapi token / Meta access token)")
    new_app_secret = _write_only("Meta app secret")
    new_verify_token = _write_only("Meta verify token")
    new_webhook_secret = _write_only("Webhook secret (Whapi Authorization bearer)")

    class Meta:
        model = Channel
        fields = (
            "workspace",
            "provider",
            "display_name",
            "phone_number",
            "meta_phone_number_id",
            "whapi_channel_id",
            "api_base_url",
            "rate_limit_per_second",
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        provider = data.get("provider") or (self.instance.provider if self.instance.pk else "")
        phone_number_id = data.get("meta_phone_number_id") or ""
        if provider == Channel.Provider.META and not phone_number_id:
            self.add_error("meta_phone_number_id", "A Meta number needs its phone_number_id.")
        workspace = data.get("workspace")
        if (
            workspace is not None
            and not self.instance.pk
            and workspace.channels.count() >= workspace.max_channels
        ):
            self.add_error(
                "workspace",
                f"{workspace.name} has reached its plan limit of {workspace.max_channels} numbers.",
            )
        return data


@admin.register(Channel)
class ChannelAdmin(WorkspaceScopedAdmin):
    form = ChannelForm
    list_display = (
        "display_name",
        "phone_number",
        "provider",
        "status",
        "workspace",
        "last_inbound_at",
        "last_sent_at",
    )
    list_filter = ("provider", "status", "workspace")
    search_fields = ("display_name", "phone_number", "meta_phone_number_id", "whapi_channel_id")
    readonly_fields = ("status", "status_detail", "paused_until", "stored_tokens", "created_at", "updated_at")
    actions = ["pause", "resume"]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        main = [
            "workspace",
            "provider",
            "display_name",
            "phone_number",
            "meta_phone_number_id",
            "whapi_channel_id",
            "api_base_url",
            "rate_limit_per_second",
        ]
        if obj is not None:
            main.remove("workspace")
            main.remove("provider")
        fieldsets: list[Any] = [(None, {"fields": main})]
        fieldsets.append(("Secrets", {"fields": [*(["stored_tokens"] if obj else []), *TOKEN_FIELDS]}))
        if obj is not None:
            fieldsets.append(
                ("State", {"fields": ["status", "status_detail", "paused_until", "created_at", "updated_at"]})
            )
        return fieldsets

    @admin.display(description="Stored secrets")
    def stored_tokens(self, obj: Channel) -> str:
        types = channel_token_types(channel=obj)
        if not types:
            return "none"
        labels = dict(ChannelToken.TokenType.choices)
        return format_html_join(", ", "{} ✓", ((labels.get(t, t),) for t in types))

    def save_model(self, request: HttpRequest, obj: Channel, form: Any, change: bool) -> None:
        data = form.cleaned_data
        tokens: dict[str, str] = {str(t): data.get(f) or "" for f, t in TOKEN_FIELDS.items()}
        try:
            if change:
                editable = [
                    "display_name",
                    "phone_number",
                    "meta_phone_number_id",
                    "whapi_channel_id",
                    "api_base_url",
                    "rate_limit_per_second",
                ]
                current = Channel.objects.get(pk=obj.pk)
                channel_update(
                    channel=current, actor=request.user, **{f: data[f] for f in editable if f in data}
                )
                for token_type, value in tokens.items():
                    if value:
                        channel_token_set(
                            channel=current, token_type=token_type, value=value, actor=request.user
                        )
            else:
                created = channel_create(
                    workspace=data["workspace"],
                    provider=data["provider"],
                    display_name=data["display_name"],
                    phone_number=data["phone_number"],
                    meta_phone_number_id=data.get("meta_phone_number_id") or "",
                    whapi_channel_id=data.get("whapi_channel_id") or "",
                    api_base_url=data.get("api_base_url") or "",
                    rate_limit_per_second=data.get("rate_limit_per_second"),
                    tokens=tokens,
                    actor=request.user,
                )
                obj.pk = created.pk
        except ChannelError as exc:
            self.message_user(request, str(exc), level=messages.ERROR)

    @admin.action(description="Pause sending")
    def pause(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        for channel in queryset:
            channel_pause(channel=channel, actor=request.user)
        self.message_user(request, f"Paused {len(queryset)} number(s).")

    @admin.action(description="Resume sending")
    def resume(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        for channel in queryset:
            channel_resume(channel=channel, actor=request.user)
        self.message_user(request, f"Resumed {len(queryset)} number(s).")
