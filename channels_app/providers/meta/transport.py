"""Sending through Meta's WhatsApp Cloud API: ``POST {base}/{version}/{phone_number_id}/messages``.

Errors are mapped on ``error.code`` first, the HTTP status second, as Meta asks (wire-notes A4.1/A4.2):

| code / status                         | kind                                              |
|---------------------------------------|---------------------------------------------------|
| timeout, connection error, 5xx, 131000 (and 1, 2, 131057: unknown, unavailable, maintenance) | transient |
| HTTP 429, 130429, 4, 80007            | rate limited: pause the number until Retry-After  |
| 131056                                | pair limit: retry this one message later          |
| 131047                                | permanent: outside the 24-hour window             |
| 190, HTTP 401                         | permanent, and the number is disconnected         |
| other 4xx                             | permanent, with Meta's own message                |

A file upload goes first to ``/{phone_number_id}/media`` and is then sent by its media id.
"""

from __future__ import annotations

from typing import Any

import requests

from channels_app.providers.base import FailureKind, OutgoingMessage, SendResult, TransportError
from channels_app.providers.sending import (
    DEFAULT_TIMEOUT,
    JsonPost,
    http_session,
    json_or_empty,
    network_error,
    parse_retry_after,
)

PROVIDER = "Meta"
MEDIA_TYPES = {"image", "video", "audio", "document", "sticker"}
RATE_LIMIT_CODES = {4, 80007, 130429}
TRANSIENT_CODES = {1, 2, 131000, 131057}
PAIR_LIMIT_CODE = 131056
WINDOW_CLOSED_CODE = 131047
TOKEN_INVALID_CODE = 190
WINDOW_CLOSED_MESSAGE = "outside the 24-hour window: send a template"


def meta_recipient(to: str) -> str:
    # Our chat ids may carry a WhatsApp JID suffix; Meta wants the bare number.
    return to.split("@", 1)[0]


def meta_request_body(message: OutgoingMessage, *, media_id: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": meta_recipient(message.to),
        "type": message.type,
    }
    if message.reply_to_wa_id:
        body["context"] = {"message_id": message.reply_to_wa_id}
    if message.type == "text":
        body["text"] = {"body": message.text}
    elif message.type == "template":
        template: dict[str, Any] = {
            "name": message.template_name,
            "language": {"code": message.template_language or "en_US"},
        }
        if message.template_components:
            template["components"] = message.template_components
        body["template"] = template
    elif message.type in MEDIA_TYPES:
        media: dict[str, Any] = {"id": media_id} if media_id else {"link": message.media_url}
        if message.caption and message.type in {"image", "video", "document"}:
            media["caption"] = message.caption
        if message.type == "document" and message.media_filename:
            media["filename"] = message.media_filename
        body[message.type] = media
    else:
        raise TransportError(
            f"Meta sending does not support {message.type!r} messages",
            kind=FailureKind.PERMANENT,
            code="unsupported",
        )
    return body


class MetaTransport:
    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        phone_number_id: str,
        graph_version: str,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.phone_number_id = phone_number_id
        self.graph_version = graph_version
        self.timeout = timeout
        self._send_post = JsonPost(
            f"{self.base_url}/{self.graph_version}/{self.phone_number_id}/messages",
            {"Authorization": f"Bearer {self._token}"},
        )

    def __repr__(self) -> str:  # never show the token
        return f"MetaTransport(base_url={self.base_url!r}, phone_number_id={self.phone_number_id!r})"

    @property
    def _number_url(self) -> str:
        return f"{self.base_url}/{self.graph_version}/{self.phone_number_id}"

    def _post(self, url: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self._token}", **kwargs.pop("headers", {})}
        try:
            return http_session().post(url, headers=headers, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise network_error(exc, PROVIDER) from None

    def upload_media(self, message: OutgoingMessage) -> str:
        assert message.media_bytes is not None
        mime = message.media_mime_type or "application/octet-stream"
        response = self._post(
            f"{self._number_url}/media",
            data={"messaging_product": "whatsapp", "type": mime},
            files={"file": (message.media_filename or "upload", message.media_bytes, mime)},
        )
        data = json_or_empty(response)
        if response.status_code != 200:
            raise meta_error(response.status_code, data, response.headers.get("Retry-After"))
        media_id = data.get("id")
        if not media_id:
            raise TransportError(
                "Meta accepted the upload but returned no media id", kind=FailureKind.TRANSIENT
            )
        return str(media_id)

    def send(self, message: OutgoingMessage) -> SendResult:
        media_id = ""
        if message.type in MEDIA_TYPES and message.media_bytes is not None:
            media_id = self.upload_media(message)
        elif message.type in MEDIA_TYPES and not message.media_url:
            raise TransportError(
                "a media message needs a URL or a file", kind=FailureKind.PERMANENT, code="no_media"
            )
        body = meta_request_body(message, media_id=media_id)
        try:
            response = self._send_post(body, timeout=self.timeout)
        except requests.RequestException as exc:
            raise network_error(exc, PROVIDER) from None
        data = json_or_empty(response)
        if response.status_code == 200:
            messages = data.get("messages") or []
            wamid = messages[0].get("id") if messages and isinstance(messages[0], dict) else None
            if not wamid:
                raise TransportError(
                    "Meta accepted the message but returned no message id",
                    kind=FailureKind.PERMANENT,
                    code="no_id",
                )
            return SendResult(wa_message_id=str(wamid), raw=data)
        raise meta_error(response.status_code, data, response.headers.get("Retry-After"))


def meta_error(status: int, data: dict[str, Any], retry_after: str | None) -> TransportError:
    raw_error = data.get("error")
    error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
    code: int | None
    try:
        code = int(error["code"])
    except (KeyError, TypeError, ValueError):
        code = None
    provider_message = str(error.get("message") or "").strip()
    details = str((error.get("error_data") or {}).get("details") or "").strip()
    text = provider_message + (f": {details}" if details else "")
    code_str = str(code) if code is not None else str(status)

    if status == 429 or code in RATE_LIMIT_CODES:
        return TransportError(
            text or "Meta rate limit hit",
            kind=FailureKind.RATE_LIMITED,
            code=code_str,
            retry_after=parse_retry_after(retry_after),
        )
    if code == PAIR_LIMIT_CODE:
        return TransportError(
            text or "too many messages to this recipient; retrying later",
            kind=FailureKind.PAIR_LIMITED,
            code=code_str,
        )
    if code == WINDOW_CLOSED_CODE:
        return TransportError(WINDOW_CLOSED_MESSAGE, kind=FailureKind.PERMANENT, code=code_str)
    if code == TOKEN_INVALID_CODE or status == 401:
        return TransportError(
            "Meta refused the access token: reconnect this number with a valid token",
            kind=FailureKind.PERMANENT,
            code=code_str,
            disconnect=True,
        )
    if code in TRANSIENT_CODES or status >= 500:
        return TransportError(
            text or f"Meta server error {status}", kind=FailureKind.TRANSIENT, code=code_str
        )
    return TransportError(
        text or f"Meta refused the message (HTTP {status})", kind=FailureKind.PERMANENT, code=code_str
    )
