"""A message's media file: the provider's reference on a received message, the download kicked after
commit, then the downloaded file stored (or given up on)."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from channels_app.providers.base import MediaInfo
from inbox.models import Message
from inbox.realtime import push_message_updated

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------- the provider's reference, on receipt


def _media_set(message: Message, media: MediaInfo) -> None:
    """The provider's file reference on the message; a file to fetch makes its media ``pending``."""
    message.media_id = media.media_id[:255]
    message.media_url = media.url[:2000]
    message.media_mime_type = media.mime_type[:128]
    message.media_sha256 = media.sha256[:128]
    message.media_size = media.size
    message.media_filename = media.filename[:255]
    if media.media_id or media.url:
        message.media_status = Message.MediaStatus.PENDING


def _media_download_on_commit(message_id: int) -> None:
    from inbox.tasks import message_media_download  # the task module imports services: import late

    transaction.on_commit(lambda: message_media_download.delay(message_id))


# ---------------------------------------------------------------- media files


def message_media_store(*, message: Message, content: bytes, mime_type: str = "") -> Message:
    """Keep a downloaded media file in Django storage and mark the message's media stored."""
    from django.core.files.base import ContentFile

    extension = _extension_for(mime_type or message.media_mime_type)
    name = message.media_filename or f"{message.wa_message_id or message.pk}{extension}"
    with transaction.atomic(savepoint=False):
        locked = Message.objects.select_for_update(no_key=True).get(pk=message.pk)
        if locked.media_status == Message.MediaStatus.STORED:
            return locked  # a retried task after a success: keep the first file
        locked.media_file.save(_safe_name(name), ContentFile(content), save=False)
        locked.media_status = Message.MediaStatus.STORED
        fields = ["media_file", "media_status", "updated_at"]
        if mime_type and not locked.media_mime_type:
            locked.media_mime_type = mime_type[:128]
            fields.append("media_mime_type")
        if locked.media_size is None:
            locked.media_size = len(content)
            fields.append("media_size")
        locked.save(update_fields=fields)
        push_message_updated(locked)
    return locked


def message_media_failed(*, message: Message, reason: str) -> Message:
    """The download gave up: the message stays, its bubble says the file could not be fetched."""
    with transaction.atomic(savepoint=False):
        updated = Message.objects.filter(pk=message.pk, media_status=Message.MediaStatus.PENDING).update(
            media_status=Message.MediaStatus.FAILED, updated_at=timezone.now()
        )
        if updated:
            message.media_status = Message.MediaStatus.FAILED
            logger.warning("media of message %s not downloaded: %s", message.pk, reason)
            push_message_updated(message)
    return message


def _extension_for(mime_type: str) -> str:
    import mimetypes

    return mimetypes.guess_extension(mime_type.split(";")[0].strip()) or "" if mime_type else ""


def _safe_name(name: str) -> str:
    import re

    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "media"
    return cleaned[-100:]
