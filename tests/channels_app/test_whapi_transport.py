"""Whapi sending over real HTTP to the fake provider: request format and every error class."""

from __future__ import annotations

import base64
import socket

import pytest

from channels_app.providers.base import FailureKind, OutgoingMessage, TransportError
from channels_app.providers.whapi.transport import WhapiTransport

TOKEN = "whapi-secret-token"
TO = "14155552671@s.whatsapp.net"


@pytest.fixture
def transport(fake_provider):
    return WhapiTransport(base_url=fake_provider.url, token=TOKEN, timeout=(1.0, 0.5))


def send_and_capture(transport, fake_provider, message):
    result = transport.send(message)
    [request] = fake_provider.sends()
    return result, request


def test_it_sends_text_with_bearer_token_and_returns_the_message_id(transport, fake_provider):
    result, request = send_and_capture(
        transport, fake_provider, OutgoingMessage(to=TO, type="text", text="Hi there")
    )
    assert request.method == "POST"
    assert request.path == "/messages/text"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert request.json == {"to": TO, "body": "Hi there"}
    assert result.wa_message_id == request.message_id
    assert result.raw["message"]["id"] == result.wa_message_id


def test_it_quotes_the_replied_message(transport, fake_provider):
    _, request = send_and_capture(
        transport,
        fake_provider,
        OutgoingMessage(to=TO, type="text", text="Yes", reply_to_wa_id="abcd1234-efgh5678"),
    )
    assert request.json == {"to": TO, "body": "Yes", "quoted": "abcd1234-efgh5678"}


@pytest.mark.parametrize("kind", ["image", "video", "audio", "document"])
def test_it_sends_media_by_url_to_the_kind_endpoint(transport, fake_provider, kind):
    message = OutgoingMessage(
        to=TO,
        type=kind,
        media_url=f"https://files.example.com/x.{kind}",
        caption="look",
        media_filename="x.pdf",
    )
    _, request = send_and_capture(transport, fake_provider, message)
    assert request.path == f"/messages/{kind}"
    expected = {"to": TO, "media": f"https://files.example.com/x.{kind}"}
    if kind in {"image", "video", "document"}:
        expected["caption"] = "look"
    if kind == "document":
        expected["filename"] = "x.pdf"
    assert request.json == expected


@pytest.mark.parametrize("kind", ["image", "video", "audio", "document"])
def test_it_uploads_a_file_inline_as_a_base64_data_url(transport, fake_provider, kind):
    content = b"\x89PNG fake bytes"
    message = OutgoingMessage(
        to=TO, type=kind, media_bytes=content, media_filename="photo.png", media_mime_type="image/png"
    )
    _, request = send_and_capture(transport, fake_provider, message)
    assert request.path == f"/messages/{kind}"
    media = request.json["media"]
    prefix = "data:image/png;name=photo.png;base64,"
    assert media.startswith(prefix)
    assert base64.b64decode(media[len(prefix) :]) == content
    assert request.json["mime_type"] == "image/png"


def test_it_refuses_a_template_because_whapi_has_none(transport, fake_provider):
    with pytest.raises(TransportError) as caught:
        transport.send(OutgoingMessage(to=TO, type="template", template_name="hello"))
    assert caught.value.kind == FailureKind.PERMANENT
    assert fake_provider.sends() == []


def test_a_timeout_is_transient(transport, fake_provider):
    fake_provider.add_rule("timeout", delay=3.0)
    with pytest.raises(TransportError) as caught:
        transport.send(OutgoingMessage(to=TO, type="text", text="x"))
    assert (caught.value.kind, caught.value.code) == (FailureKind.TRANSIENT, "timeout")


def test_a_dropped_connection_is_transient(transport, fake_provider):
    fake_provider.add_rule("disconnect")
    with pytest.raises(TransportError) as caught:
        transport.send(OutgoingMessage(to=TO, type="text", text="x"))
    assert caught.value.kind == FailureKind.TRANSIENT


def test_a_refused_connection_is_transient():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    transport = WhapiTransport(base_url=f"http://127.0.0.1:{port}", token=TOKEN, timeout=(1.0, 1.0))
    with pytest.raises(TransportError) as caught:
        transport.send(OutgoingMessage(to=TO, type="text", text="x"))
    assert (caught.value.kind, caught.value.code) == (FailureKind.TRANSIENT, "connection")


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_server_error_is_transient(transport, fake_provider, status):
    fake_provider.add_rule("server_error", status=status)
    with pytest.raises(TransportError) as caught:
        transport.send(OutgoingMessage(to=TO, type="text", text="x"))
    assert caught.value.kind == FailureKind.TRANSIENT


def test_a_429_is_rate_limited_with_its_retry_after(transport, fake_provider):
    fake_provider.add_rule("rate_limit", retry_after="17")
    with pytest.raises(TransportError) as caught:
        transport.send(OutgoingMessage(to=TO, type="text", text="x"))
    assert caught.value.kind == FailureKind.RATE_LIMITED
    assert caught.value.retry_after == 17


def test_a_429_without_retry_after_waits_a_minute(transport, fake_provider):
    fake_provider.add_rule("rate_limit")
    with pytest.raises(TransportError) as caught:
        transport.send(OutgoingMessage(to=TO, type="text", text="x"))
    assert caught.value.retry_after == 60


def test_a_401_is_permanent_and_disconnects_without_leaking_the_token(transport, fake_provider):
    fake_provider.add_rule("whapi_error", status=401, message="Need channel authorization for send message")
    with pytest.raises(TransportError) as caught:
        transport.send(OutgoingMessage(to=TO, type="text", text="x"))
    assert caught.value.kind == FailureKind.PERMANENT
    assert caught.value.disconnect is True
    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(transport)


def test_another_4xx_is_permanent_with_the_providers_message(transport, fake_provider):
    fake_provider.add_rule(
        "whapi_error",
        status=403,
        message="It is forbidden to send to this group/recipient",
        details="blocked",
    )
    with pytest.raises(TransportError) as caught:
        transport.send(OutgoingMessage(to=TO, type="text", text="x"))
    assert caught.value.kind == FailureKind.PERMANENT
    assert caught.value.disconnect is False
    assert str(caught.value) == "It is forbidden to send to this group/recipient: blocked"
