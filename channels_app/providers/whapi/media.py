"""Whapi media download: the message's ``link`` when given, else ``GET {base}/media/{media_id}``."""

from __future__ import annotations

from urllib.parse import quote, urlparse

from channels_app.providers.media import MediaDownload, MediaFetchError, http_get_capped, media_session


def whapi_media_fetch(*, base_url: str, token: str, link: str = "", media_id: str = "") -> MediaDownload:
    session = media_session()
    base = base_url.rstrip("/")
    if link:
        # Only Whapi's own API host gets the token; a storage link is fetched as it is.
        same_host = urlparse(link).netloc == urlparse(base).netloc
        headers = {"Authorization": f"Bearer {token}"} if same_host and token else {}
        return http_get_capped(session, link, headers=headers, what="Whapi media link")
    if not media_id:
        raise MediaFetchError("Whapi media: neither a link nor a media id", permanent=True)
    if not token:
        raise MediaFetchError("Whapi media: the channel has no API token", permanent=True)
    return http_get_capped(
        session,
        f"{base}/media/{quote(media_id, safe='')}",
        headers={"Authorization": f"Bearer {token}"},
        what="Whapi media download",
    )
