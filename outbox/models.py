from __future__ import annotations

from django.db import models
from django.db.models import Q

from channels_app.models import Channel
from inbox.models import Chat, Message


class OutboxMessage(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        PAUSED = "paused", "Paused"
        CANCELLED = "cancelled", "Cancelled"

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="outbox")
    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, null=True, blank=True, related_name="outbox")
    message = models.OneToOneField(
        Message, on_delete=models.CASCADE, null=True, blank=True, related_name="outbox_entry"
    )
    message_type = models.CharField(max_length=16)
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=5)
    priority = models.SmallIntegerField(default=0, help_text="Higher goes first.")
    next_attempt_at = models.DateTimeField()
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    last_error_code = models.CharField(max_length=32, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                models.F("priority").desc(),
                "created_at",
                name="outbox_queued_priority",
                condition=Q(status="queued"),
            ),
            models.Index(fields=["channel", "status"], name="outbox_channel_status"),
            models.Index(fields=["chat", "status", "created_at"], name="outbox_chat_order"),
            models.Index(
                fields=["lease_expires_at"], name="outbox_sending_lease", condition=Q(status="sending")
            ),
        ]

    def __str__(self) -> str:
        return f"outbox {self.pk} {self.status}"
