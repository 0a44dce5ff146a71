"""Sending through Whapi.Cloud: ``POST {base}/messages/<kind>`` with the channel's bearer token.

Success is HTTP 200/201 ``{"sent": true, "message": {"id": ...}}``; errors are
``{"error": {"code": <int>, "message": ..., "details": ...}}`` (wire-notes B2). Whapi documents no
Retry-After header, so a 429 without one waits the default minute.
"""

from __future__ import annotations

import base64
from typing import Any

import requests

from channels_app.providers.base import FailureKind, OutgoingMessage, SendResult, TransportError
from channels_app.providers.sending import (
    DEFAULT_TIMEOUT,
    JsonPost,
    json_or_empty,
    network_error,
    parse_retry_after,
)

MEDIA_ENDPOINTS = {
    "image": "image",
    "video": "video",
    "audio": "audio",
    "voice": "voice",
    "document": "document",
}
PROVIDER = "Whapi"


def whapi_request_body(message: OutgoingMessage) -> tuple[str, dict[str, Any]]:
    """The endpoint suffix and JSON body for one message."""
    body: dict[str, Any] = {"to": message.to}
    if message.reply_to_wa_id:
        body["quoted"] = message.reply_to_wa_id
    if message.type == "text":
        body["body"] = message.text
        return "text", body
    if message.type == "template":
        # Templates are a Meta Cloud API concept; a Whapi number sends free text at any time.
        raise TransportError(
            "Whapi numbers cannot send Meta templates", kind=FailureKind.PERMANENT, code="unsupported"
        )
    endpoint = MEDIA_ENDPOINTS.get(message.type)
    if endpoint is None:
        raise TransportError(
            f"Whapi sending does not support {message.type!r} messages",
            kind=FailureKind.PERMANENT,
            code="unsupported",
        )
    if message.media_bytes is not None:
        # Upload on the fly as a data URL; Whapi reads the file name from the ``name`` parameter.
        mime = message.media_mime_type or "application/octet-stream"
        name = f";name={message.media_filename}" if message.media_filename else ""
        encoded = base64.b64encode(message.media_bytes).decode("ascii")
        body["media"] = f"data:{mime}{name};base64,{encoded}"
    elif message.media_url:
        body["media"] = message.media_url
    else:
        raise TransportError(
            "a media message needs a URL or a file", kind=FailureKind.PERMANENT, code="no_media"
        )
    if message.media_mime_type:
        body["mime_type"] = message.media_mime_type
    if message.caption and endpoint in {"image", "video", "document"}:
        body["caption"] = message.caption
    if endpoint == "document" and message.media_filename:
        body["filename"] = message.media_filename
    return endpoint, body


class WhapiTransport:
    def __init__(self, *, base_url: str, token: str, timeout: tuple[float, float] = DEFAULT_TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self._posts: dict[str, JsonPost] = {}

    def __repr__(self) -> str:  # never show the token
        return f"WhapiTransport(base_url={self.base_url!r})"

    def _post(self, endpoint: str) -> JsonPost:
        post = self._posts.get(endpoint)
        if post is None:
            post = self._posts[endpoint] = JsonPost(
                f"{self.base_url}/messages/{endpoint}",
                {"Authorization": f"Bearer {self._token}", "Accept": "application/json"},
            )
        return post

    def send(self, message: OutgoingMessage) -> SendResult:
        endpoint, body = whapi_request_body(message)
        try:
            response = self._post(endpoint)(body, timeout=self.timeout)
        except requests.RequestException as exc:
            raise network_error(exc, PROVIDER) from None
        data = json_or_empty(response)
        if response.status_code in (200, 201):
            message_id = (data.get("message") or {}).get("id") or data.get("id")
            if not message_id:
                # Accepted but no id: we cannot match later statuses. Treat as transient? No: a retry would
                # send a second copy of a message the provider accepted, so fail it for a person to look at.
                raise TransportError(
                    "Whapi accepted the message but returned no message id",
                    kind=FailureKind.PERMANENT,
                    code="no_id",
                )
            return SendResult(wa_message_id=str(message_id), raw=data)
        raise whapi_error(response.status_code, data, response.headers.get("Retry-After"))


def whapi_error(status: int, data: dict[str, Any], retry_after: str | None) -> TransportError:
    raw_error = data.get("error")
    error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
    provider_message = str(error.get("message") or "").strip()
    details = str(error.get("details") or "").strip()
    text = provider_message + (f": {details}" if details and details != provider_message else "")
    code = str(error.get("code") or status)
    if status == 429:
        return TransportError(
            text or "Whapi rate limit hit",
            kind=FailureKind.RATE_LIMITED,
            code=code,
            retry_after=parse_retry_after(retry_after),
        )
    if status == 401:
        return TransportError(
            "Whapi refused the API token (401): reconnect this number with a valid token",
            kind=FailureKind.PERMANENT,
            code=code,
            disconnect=True,
        )
    if status >= 500 or status == 408:
        return TransportError(
            f"Whapi server error {status}" + (f": {text}" if text else ""),
            kind=FailureKind.TRANSIENT,
            code=code,
        )
    return TransportError(
        text or f"Whapi refused the message (HTTP {status})", kind=FailureKind.PERMANENT, code=code
    )
