"""Inbox background work: fetching a message's media file after the message is stored."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from channels_app.models import Channel
from channels_app.providers.media import MediaDownload, MediaFetchError
from channels_app.providers.meta.media import meta_media_fetch
from channels_app.providers.whapi.media import whapi_media_fetch
from channels_app.services import channel_token_read
from inbox.models import Message
from inbox.services.receive import message_media_failed, message_media_store

logger = logging.getLogger(__name__)

MEDIA_MAX_RETRIES = 5


def _media_fetch(message: Message) -> MediaDownload:
    channel = message.channel
    token = channel_token_read(channel=channel, token_type="api_token") or ""
    if channel.provider == Channel.Provider.META:
        return meta_media_fetch(
            base_url=channel.base_url,
            graph_version=settings.META_GRAPH_VERSION,
            token=token,
            media_id=message.media_id,
            phone_number_id=channel.meta_phone_number_id,
        )
    return whapi_media_fetch(
        base_url=channel.base_url, token=token, link=message.media_url, media_id=message.media_id
    )


@shared_task(bind=True, max_retries=MEDIA_MAX_RETRIES, acks_late=True)
def message_media_download(self, message_id: int) -> str:  # type: ignore[no-untyped-def]
    """Fetch the file into Django storage; retried with backoff (30 s, 1, 2, 4, 8 min), then marked failed.

    The message is already committed: a failure here only changes ``media_status``, never the message.
    Run in-process (embedded mode, tests) there is no worker to come back later, so the retries happen
    at once, one after the other.
    """
    message = Message.objects.select_related("channel").filter(pk=message_id).first()
    if message is None or message.media_status != Message.MediaStatus.PENDING:
        return "skipped"
    attempt = self.request.retries
    while True:
        try:
            download = _media_fetch(message)  # slow I/O, outside any transaction
            break
        except MediaFetchError as exc:
            if exc.permanent or attempt >= self.max_retries:
                message_media_failed(message=message, reason=str(exc))
                return "failed"
            logger.info("media of message %s: %s (retry %s)", message_id, exc, attempt + 1)
            if not self.request.is_eager:
                raise self.retry(countdown=30 * (2**attempt)) from None
            attempt += 1
    message_media_store(message=message, content=download.content, mime_type=download.mime_type)
    return "stored"
