from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from channels_app.models import Channel
from tenants.models import Workspace


class Contact(models.Model):
    """A WhatsApp user as one number sees them."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="contacts")
    wa_id = models.CharField(max_length=64)
    name = models.CharField(max_length=255, blank=True, default="")
    phone_number = models.CharField(max_length=32, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["channel", "wa_id"], name="contact_unique_wa_id")]

    def __str__(self) -> str:
        return self.name or self.phone_number or self.wa_id


class Chat(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        PENDING = "pending", "Pending"
        RESOLVED = "resolved", "Resolved"

    # Denormalised from channel so the inbox lists a workspace's chats from one index.
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="chats")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="chats")
    wa_chat_id = models.CharField(max_length=128)
    contact = models.ForeignKey(
        Contact, on_delete=models.SET_NULL, null=True, blank=True, related_name="chats"
    )
    contact_name = models.CharField(max_length=255, blank=True, default="")
    contact_phone = models.CharField(max_length=32, blank=True, default="")
    is_group = models.BooleanField(default=False)
    last_message_preview = models.CharField(max_length=255, blank=True, default="")
    last_message_at = models.DateTimeField(null=True, blank=True)
    unread_count = models.PositiveIntegerField(default=0)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="assigned_chats",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    # Meta only: the customer-service window closes 24 h after the customer's last message.
    window_expires_at = models.DateTimeField(null=True, blank=True)
    last_read_at = models.DateTimeField(null=True, blank=True)
    archived = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel", "wa_chat_id"], name="chat_unique_wa_chat_id")
        ]
        indexes = [
            models.Index(fields=["channel", "-last_message_at"], name="chat_channel_recent"),
            models.Index(
                fields=["workspace", "status", "-last_message_at", "-id"], name="chat_ws_status_recent"
            ),
            models.Index(fields=["workspace", "-updated_at"], name="chat_ws_updated"),
        ]

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        return self.contact_name or self.contact_phone or self.wa_chat_id.split("@")[0]


class Message(models.Model):
    class Direction(models.TextChoices):
        INBOUND = "in", "Inbound"
        OUTBOUND = "out", "Outbound"

    class Type(models.TextChoices):
        TEXT = "text", "Text"
        IMAGE = "image", "Image"
        VIDEO = "video", "Video"
        AUDIO = "audio", "Audio"
        VOICE = "voice", "Voice note"
        DOCUMENT = "document", "Document"
        STICKER = "sticker", "Sticker"
        LOCATION = "location", "Location"
        CONTACTS = "contacts", "Contacts"
        INTERACTIVE = "interactive", "Interactive reply"
        BUTTON = "button", "Button reply"
        TEMPLATE = "template", "Template"
        REACTION = "reaction", "Reaction"
        SYSTEM = "system", "System"
        UNSUPPORTED = "unsupported", "Unsupported"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        READ = "read", "Read"
        FAILED = "failed", "Failed"
        RECEIVED = "received", "Received"

    class MediaStatus(models.TextChoices):
        NONE = "", "No media"
        PENDING = "pending", "Download pending"
        STORED = "stored", "Stored"
        FAILED = "failed", "Download failed"

    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, related_name="messages")
    # Denormalised from chat so (channel, wa_message_id) can be unique.
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="messages")
    wa_message_id = models.CharField(max_length=255, null=True, blank=True)
    client_message_id = models.CharField(max_length=128, null=True, blank=True)
    direction = models.CharField(max_length=3, choices=Direction.choices)
    type = models.CharField(max_length=16, choices=Type.choices, default=Type.TEXT)
    text = models.TextField(blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    error_code = models.CharField(max_length=32, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    sender = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    author_wa_id = models.CharField(max_length=64, blank=True, default="", help_text="Group author.")
    author_name = models.CharField(max_length=255, blank=True, default="")
    reply_to = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="replies"
    )
    reply_to_wa_id = models.CharField(max_length=255, blank=True, default="")
    media_id = models.CharField(max_length=255, blank=True, default="")
    media_url = models.URLField(max_length=2000, blank=True, default="")
    media_mime_type = models.CharField(max_length=128, blank=True, default="")
    media_sha256 = models.CharField(max_length=128, blank=True, default="")
    media_size = models.PositiveBigIntegerField(null=True, blank=True)
    media_filename = models.CharField(max_length=255, blank=True, default="")
    media_file = models.FileField(upload_to="media/%Y/%m/", blank=True, default="")
    media_status = models.CharField(max_length=16, choices=MediaStatus.choices, blank=True, default="")
    payload = models.JSONField(default=dict, blank=True, help_text="Type-specific data: location, template…")
    edited_at = models.DateTimeField(null=True, blank=True)
    previous_text = models.TextField(blank=True, default="")
    deleted_at = models.DateTimeField(null=True, blank=True)
    provider_timestamp = models.DateTimeField(null=True, blank=True)
    # provider_timestamp when known, else arrival; messages sort by (sort_at, id).
    sort_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel", "wa_message_id"], name="message_unique_wa_message_id"),
            models.UniqueConstraint(
                fields=["channel", "client_message_id"],
                condition=Q(client_message_id__isnull=False),
                name="message_unique_client_message_id",
            ),
        ]
        indexes = [
            models.Index(fields=["chat", "-created_at"], name="message_chat_recent"),
            models.Index(fields=["chat", "-sort_at", "-id"], name="message_chat_sort"),
        ]

    def __str__(self) -> str:
        return f"{self.direction} {self.type} {self.wa_message_id or self.pk}"

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None


class MessageReaction(models.Model):
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reactions")
    reactor_wa_id = models.CharField(max_length=64, help_text="Who reacted: a WhatsApp id, or 'me'.")
    emoji = models.CharField(max_length=32)
    wa_message_id = models.CharField(max_length=255, blank=True, default="")
    reacted_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message", "reactor_wa_id"], name="reaction_unique_reactor"),
        ]

    def __str__(self) -> str:
        return f"{self.emoji} on {self.message_id}"


class DeferredStatus(models.Model):
    """A status for a message id we have not seen yet (it can beat the send response)."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="deferred_statuses")
    wa_message_id = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=Message.Status.choices)
    error_code = models.CharField(max_length=32, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    occurred_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["channel", "wa_message_id"], name="deferred_status_lookup")]

    def __str__(self) -> str:
        return f"{self.status} for {self.wa_message_id}"


class MessageEvent(models.Model):
    """One step of a message's life, for its timeline (received, queued, sent, delivered…)."""

    class Kind(models.TextChoices):
        RECEIVED = "received", "Received by webhook"
        STORED = "stored", "Stored"
        PROCESSED = "processed", "Processed"
        PUSHED = "pushed", "Pushed to browsers"
        QUEUED = "queued", "Queued"
        CLAIMED = "claimed", "Claimed by a worker"
        SENT = "sent", "Accepted by provider"
        DELIVERED = "delivered", "Delivered"
        READ = "read", "Read"
        FAILED = "failed", "Failed"
        RETRY = "retry", "Retry scheduled"
        EDITED = "edited", "Edited"
        DELETED = "deleted", "Deleted"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    detail = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField()

    class Meta:
        ordering = ["occurred_at", "id"]
        indexes = [models.Index(fields=["message", "occurred_at"], name="message_event_timeline")]

    def __str__(self) -> str:
        return f"{self.kind} @ {self.occurred_at:%Y-%m-%d %H:%M:%S}"
