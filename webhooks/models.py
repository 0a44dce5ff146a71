from __future__ import annotations

from django.db import models
from django.db.models import Q

from channels_app.models import Channel


class WebhookEvent(models.Model):
    """A provider's POST exactly as received, stored before we answer 200."""

    class Provider(models.TextChoices):
        WHAPI = "whapi", "Whapi.Cloud"
        META = "meta", "Meta WhatsApp Cloud API"
        SANDBOX = "sandbox", "Sandbox"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing"
        PROCESSED = "processed", "Processed"
        FAILED = "failed", "Failed (will retry)"
        DEAD = "dead", "Dead letter"

    provider = models.CharField(max_length=16, choices=Provider.choices)
    channel = models.ForeignKey(
        Channel, on_delete=models.SET_NULL, null=True, blank=True, related_name="webhook_events"
    )
    headers = models.JSONField(default=dict, blank=True)
    raw_body = models.BinaryField()
    signature_valid = models.BooleanField(default=False)
    event_type = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    correlation_id = models.CharField(max_length=64, blank=True, default="")
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="webhook_retry_due",
                condition=Q(status__in=["pending", "failed"]),
            ),
            models.Index(fields=["status", "received_at"], name="webhook_status_received"),
        ]

    def __str__(self) -> str:
        return f"{self.provider} event {self.pk} ({self.status})"

    @property
    def body_text(self) -> str:
        return bytes(self.raw_body).decode("utf-8", errors="replace")
