from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from tenants.models import Workspace

DEFAULT_API_BASE_URLS = {
    "whapi": "https://gate.whapi.cloud",
    "meta": "https://graph.facebook.com",
    "sandbox": "",
}

# Messages per second per number when nothing else is configured. Meta allows 80 mps per
# business number by default; Whapi recommends pacing well below that for a phone session.
DEFAULT_RATE_LIMITS = {"whapi": 5.0, "meta": 80.0, "sandbox": 20.0}


class Channel(models.Model):
    """One WhatsApp number connected through a provider."""

    class Provider(models.TextChoices):
        WHAPI = "whapi", "Whapi.Cloud"
        META = "meta", "Meta WhatsApp Cloud API"
        SANDBOX = "sandbox", "Sandbox (simulated)"

    class Status(models.TextChoices):
        CONNECTED = "connected", "Connected"
        DEGRADED = "degraded", "Degraded"
        DISCONNECTED = "disconnected", "Disconnected"
        PAUSED = "paused", "Paused"
        PENDING = "pending", "Waiting for connection"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="channels")
    provider = models.CharField(max_length=16, choices=Provider.choices)
    phone_number = models.CharField(max_length=32)
    display_name = models.CharField(max_length=120)
    meta_phone_number_id = models.CharField(max_length=64, blank=True, default="")
    whapi_channel_id = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CONNECTED, db_index=True)
    status_detail = models.CharField(max_length=255, blank=True, default="")
    api_base_url = models.URLField(blank=True, default="", help_text="Empty means the provider's real API.")
    rate_limit_per_second = models.FloatField(
        null=True, blank=True, help_text="Messages per second; empty uses the provider default."
    )
    paused_until = models.DateTimeField(null=True, blank=True)
    # The outbox does not claim this number's rate-limited rows before this moment: its send slots are
    # reserved that far ahead already (outbox.dispatch). One row to update instead of its whole backlog.
    pacing_hold_until = models.DateTimeField(null=True, blank=True)
    last_inbound_at = models.DateTimeField(null=True, blank=True)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["display_name"]
        constraints = [
            models.UniqueConstraint(
                fields=["meta_phone_number_id"],
                condition=~Q(meta_phone_number_id=""),
                name="channel_unique_meta_phone_number_id",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.display_name} ({self.phone_number})"

    @property
    def base_url(self) -> str:
        return (self.api_base_url or DEFAULT_API_BASE_URLS.get(self.provider, "")).rstrip("/")

    @property
    def effective_rate_limit(self) -> float:
        if self.rate_limit_per_second is not None:
            return self.rate_limit_per_second
        return DEFAULT_RATE_LIMITS.get(self.provider, 5.0)


class ChannelToken(models.Model):
    """A provider secret, stored encrypted (see channels_app.crypto). Never rendered anywhere."""

    class TokenType(models.TextChoices):
        API_TOKEN = "api_token", "API token"
        APP_SECRET = "app_secret", "App secret"
        VERIFY_TOKEN = "verify_token", "Verify token"
        WEBHOOK_SECRET = "webhook_secret", "Webhook secret"

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="tokens")
    token_type = models.CharField(max_length=32, choices=TokenType.choices)
    encrypted_value = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel", "token_type"], name="channeltoken_unique_type"),
        ]

    def __str__(self) -> str:
        return f"{self.get_token_type_display()} of {self.channel_id}"
