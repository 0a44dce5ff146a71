"""The media download task, against a small provider media server over real HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from channels_app.services import channel_token_set
from inbox.models import Chat, Message
from inbox.tasks import MEDIA_MAX_RETRIES, message_media_download
from tests.factories import ChannelFactory, MessageFactory

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
TOKEN = "media-test-token"


class MediaServer:
    """Meta's two-step media API (id → short-lived URL → bytes, both with the bearer) and plain links."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []  # (path, authorization)
        self.fail_paths: set[str] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                auth = self.headers.get("Authorization", "")
                path = self.path.split("?", 1)[0]
                server.requests.append((self.path, auth))
                if any(path.startswith(p) for p in server.fail_paths):
                    self._send(500, b'{"error": "boom"}', "application/json")
                elif path.startswith("/v21.0/"):
                    if auth != f"Bearer {TOKEN}":
                        self._send(401, b"{}", "application/json")
                        return
                    media_id = path.rsplit("/", 1)[1]
                    body = json.dumps({"url": f"{server.url}/lookaside/{media_id}", "mime_type": "image/png"})
                    self._send(200, body.encode(), "application/json")
                elif path.startswith("/lookaside/"):
                    if auth != f"Bearer {TOKEN}":
                        self._send(401, b"", "text/plain")
                        return
                    self._send(200, PNG, "image/png")
                elif path.startswith("/links/"):
                    self._send(200, PNG, "image/png")
                else:
                    self._send(404, b"", "text/plain")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def media_server() -> Iterator[MediaServer]:
    server = MediaServer()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.META_GRAPH_VERSION = "v21.0"


def _media_message(team, media_server: MediaServer, provider: str, **fields: Any) -> Message:
    channel = ChannelFactory(
        workspace=team.workspace_a,
        provider=provider,
        api_base_url=media_server.url,
        meta_phone_number_id="42",
    )
    channel_token_set(channel=channel, token_type="api_token", value=TOKEN, audit=False)
    chat = Chat.objects.create(workspace=team.workspace_a, channel=channel, wa_chat_id="4915550001")
    return MessageFactory(chat=chat, type="image", media_status=Message.MediaStatus.PENDING, **fields)  # type: ignore[return-value]


def test_it_downloads_meta_media_by_id_with_the_bearer_token(team, media_server):
    message = _media_message(
        team, media_server, "meta", media_id="1003383421387256", media_mime_type="image/png"
    )
    assert message_media_download.delay(message.pk).get() == "stored"
    message.refresh_from_db()
    assert message.media_status == Message.MediaStatus.STORED
    assert message.media_file.read() == PNG
    assert message.media_size == len(PNG)
    paths = [path for path, _ in media_server.requests]
    assert paths == ["/v21.0/1003383421387256?phone_number_id=42", "/lookaside/1003383421387256"]
    assert all(auth == f"Bearer {TOKEN}" for _, auth in media_server.requests)


def test_it_downloads_whapi_media_from_its_link(team, media_server):
    message = _media_message(team, media_server, "whapi", media_id="jpeg-1", media_url="")
    message.media_url = f"{media_server.url}/links/jpeg-1.png"
    message.save(update_fields=["media_url"])
    assert message_media_download.delay(message.pk).get() == "stored"
    message.refresh_from_db()
    assert message.media_file.read() == PNG


def test_a_failing_download_retries_then_marks_the_media_failed_and_keeps_the_message(team, media_server):
    media_server.fail_paths.add("/v21.0/")
    message = _media_message(team, media_server, "meta", media_id="777", text="see picture")
    message_media_download.delay(message.pk)
    message.refresh_from_db()
    assert message.media_status == Message.MediaStatus.FAILED
    assert message.text == "see picture"
    assert len(media_server.requests) == 1 + MEDIA_MAX_RETRIES


def test_a_stored_file_is_not_downloaded_again(team, media_server):
    message = _media_message(team, media_server, "meta", media_id="1")
    message_media_download.delay(message.pk)
    assert message_media_download.delay(message.pk).get() == "skipped"
    assert len(media_server.requests) == 2
