"""Meta media download: media id → short-lived URL (``GET /{version}/{media_id}``) → GET with the token."""

from __future__ import annotations

import json
from urllib.parse import quote

from channels_app.providers.media import MediaDownload, MediaFetchError, http_get_capped, media_session


def meta_media_fetch(
    *, base_url: str, graph_version: str, token: str, media_id: str, phone_number_id: str = ""
) -> MediaDownload:
    """Always asks for a fresh URL: the one in the webhook (if any) expires after 5 minutes."""
    if not media_id:
        raise MediaFetchError("Meta media: no media id", permanent=True)
    if not token:
        raise MediaFetchError("Meta media: the channel has no API token", permanent=True)
    session = media_session()
    auth = {"Authorization": f"Bearer {token}"}
    lookup = f"{base_url.rstrip('/')}/{graph_version}/{quote(media_id, safe='')}"
    params = f"?phone_number_id={quote(phone_number_id, safe='')}" if phone_number_id else ""
    meta = http_get_capped(
        session, lookup + params, headers=auth, what="Meta media lookup", max_bytes=64 * 1024
    )
    try:
        url = str(json.loads(meta.content).get("url") or "")
    except (ValueError, AttributeError):
        raise MediaFetchError("Meta media lookup: the answer is not JSON") from None
    if not url:
        raise MediaFetchError("Meta media lookup: no url in the answer")
    # The download needs the same bearer token ("If you omit your token, the request will fail").
    return http_get_capped(session, url, headers=auth, what="Meta media download")
