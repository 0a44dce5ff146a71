"""Downloading a message's media file from a provider: the HTTP part shared by the providers.

Used by ``inbox.tasks.message_media_download`` outside any transaction. Errors name the failure,
never a token or a signed URL.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests

# Meta refuses inbound files over 100 MB (error 131052); nothing larger is worth fetching.
MAX_MEDIA_BYTES = 100 * 1024 * 1024
MEDIA_TIMEOUT: tuple[float, float] = (3.05, 60.0)


@dataclass(frozen=True)
class MediaDownload:
    content: bytes
    mime_type: str


class MediaFetchError(Exception):
    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def media_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxies or .netrc credentials from the environment
    return session


def http_get_capped(
    session: requests.Session,
    url: str,
    *,
    headers: dict[str, str],
    what: str,
    max_bytes: int = MAX_MEDIA_BYTES,
) -> MediaDownload:
    """GET ``url`` and return its body, refusing more than ``max_bytes``. 404/408/429/5xx are retryable."""
    try:
        response = session.get(url, headers=headers, timeout=MEDIA_TIMEOUT, stream=True)
    except requests.RequestException as exc:
        raise MediaFetchError(f"{what}: {type(exc).__name__}") from None
    with response:
        if response.status_code >= 400:
            retryable = response.status_code in (404, 408, 429) or response.status_code >= 500
            raise MediaFetchError(f"{what}: HTTP {response.status_code}", permanent=not retryable)
        chunks: list[bytes] = []
        total = 0
        try:
            for chunk in response.iter_content(chunk_size=64 * 1024):
                total += len(chunk)
                if total > max_bytes:
                    raise MediaFetchError(f"{what}: larger than {max_bytes} bytes", permanent=True)
                chunks.append(chunk)
        except requests.RequestException as exc:
            raise MediaFetchError(f"{what}: {type(exc).__name__} while reading") from None
        mime = response.headers.get("Content-Type", "").split(";")[0].strip()
        return MediaDownload(content=b"".join(chunks), mime_type=mime)
