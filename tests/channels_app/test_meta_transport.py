"""Meta Cloud API sending over real HTTP to the fake provider: request format and every error class."""

from __future__ import annotations

import pytest

from channels_app.providers.base import FailureKind, OutgoingMessage, TransportError
from channels_app.providers.meta.transport import MetaTransport

TOKEN = "EAAJB-meta-access-token"
NUMBER_ID = "106540352242922"
VERSION = "v21.0"
TO = "16505551234"


@pytest.fixture
def transport(fake_provider):
    return MetaTransport(
        base_url=fake_provider.url,
        token=TOKEN,
        phone_number_id=NUMBER_ID,
        graph_version=VERSION,
        timeout=(1.0, 0.5),
    )


def envelope(kind: str, **extra):
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": TO, "type": kind, **extra}


def test_it_sends_text_to_the_numbers_messages_endpoint(transport, fake_provider):
    result = transport.send(OutgoingMessage(to=TO, type="text", text="Hello"))
    [request] = fake_provider.sends()
    assert request.path == f"/{VERSION}/{NUMBER_ID}/messages"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert request.json == envelope("text", text={"body": "Hello"})
    assert result.wa_message_id == request.message_id
    assert result.wa_message_id.startswith("wamid.")


def test_it_strips_a_jid_suffix_from_the_recipient(transport, fake_provider):
    transport.send(OutgoingMessage(to=f"{TO}@s.whatsapp.net", type="text", text="Hello"))
    assert fake_provider.sends()[0].json["to"] == TO


def test_a_reply_carries_the_quoted_wamid_as_context(transport, fake_provider):
    transport.send(OutgoingMessage(to=TO, type="text", text="Sure", reply_to_wa_id="wamid.ORIGINAL"))
    assert fake_provider.sends()[0].json == envelope(
        "text", text={"body": "Sure"}, context={"message_id": "wamid.ORIGINAL"}
    )


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("image", {"link": "https://f.example/a", "caption": "cap"}),
        ("video", {"link": "https://f.example/a", "caption": "cap"}),
        ("audio", {"link": "https://f.example/a"}),
        ("document", {"link": "https://f.example/a", "caption": "cap", "filename": "report.pdf"}),
    ],
)
def test_it_sends_media_by_link(transport, fake_provider, kind, expected):
    transport.send(
        OutgoingMessage(
            to=TO, type=kind, media_url="https://f.example/a", caption="cap", media_filename="report.pdf"
        )
    )
    assert fake_provider.sends()[0].json == envelope(kind, **{kind: expected})


@pytest.mark.parametrize("kind", ["image", "video", "audio", "document"])
def test_it_uploads_a_file_then_sends_it_by_media_id(transport, fake_provider, kind):
    content = b"%PDF-1.4 fake"
    transport.send(
        OutgoingMessage(
            to=TO,
            type=kind,
            media_bytes=content,
            media_filename="report.pdf",
            media_mime_type="application/pdf",
        )
    )
    upload, send = fake_provider.requests
    assert upload.path == f"/{VERSION}/{NUMBER_ID}/media"
    assert upload.headers["authorization"] == f"Bearer {TOKEN}"
    assert upload.headers["content-type"].startswith("multipart/form-data")
    assert upload.form == {"messaging_product": "whatsapp", "type": "application/pdf"}
    assert upload.files["file"]["filename"] == "report.pdf"
    assert upload.files["file"]["content"] == content
    assert upload.files["file"]["content_type"] == "application/pdf"
    assert send.json[kind]["id"] == upload.message_id
    assert "link" not in send.json[kind]


def test_it_sends_a_template_with_language_and_components(transport, fake_provider):
    components = [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]
    transport.send(
        OutgoingMessage(
            to=TO,
            type="template",
            template_name="order_update",
            template_language="pt_BR",
            template_components=components,
        )
    )
    assert fake_provider.sends()[0].json == envelope(
        "template", template={"name": "order_update", "language": {"code": "pt_BR"}, "components": components}
    )


def send_error(transport) -> TransportError:
    with pytest.raises(TransportError) as caught:
        transport.send(OutgoingMessage(to=TO, type="text", text="x"))
    return caught.value


def test_a_timeout_is_transient(transport, fake_provider):
    fake_provider.add_rule("timeout", delay=3.0)
    assert send_error(transport).kind == FailureKind.TRANSIENT


def test_a_dropped_connection_is_transient(transport, fake_provider):
    fake_provider.add_rule("disconnect")
    assert send_error(transport).kind == FailureKind.TRANSIENT


def test_a_5xx_is_transient(transport, fake_provider):
    fake_provider.add_rule("server_error", status=503)
    assert send_error(transport).kind == FailureKind.TRANSIENT


def test_code_131000_is_transient_even_on_a_400(transport, fake_provider):
    fake_provider.add_rule("meta_error", code=131000, status=400, message="Something went wrong")
    error = send_error(transport)
    assert (error.kind, error.code) == (FailureKind.TRANSIENT, "131000")


def test_http_429_is_rate_limited_with_retry_after(transport, fake_provider):
    fake_provider.add_rule("rate_limit", retry_after="42")
    error = send_error(transport)
    assert (error.kind, error.retry_after) == (FailureKind.RATE_LIMITED, 42)


@pytest.mark.parametrize("code", [130429, 4, 80007])
def test_rate_limit_codes_are_rate_limited_whatever_the_http_status(transport, fake_provider, code):
    fake_provider.add_rule("meta_error", code=code, status=400, message="Rate limit hit")
    error = send_error(transport)
    assert (error.kind, error.code, error.retry_after) == (FailureKind.RATE_LIMITED, str(code), 60)


def test_pair_limit_131056_retries_that_message_only(transport, fake_provider):
    fake_provider.add_rule("meta_error", code=131056, status=400, message="pair rate limit hit")
    error = send_error(transport)
    assert (error.kind, error.code) == (FailureKind.PAIR_LIMITED, "131056")


def test_131047_is_permanent_and_says_to_send_a_template(transport, fake_provider):
    fake_provider.add_rule("meta_error", code=131047, status=400, message="Re-engagement message")
    error = send_error(transport)
    assert (error.kind, error.code) == (FailureKind.PERMANENT, "131047")
    assert str(error) == "outside the 24-hour window: send a template"


def test_190_is_permanent_and_disconnects(transport, fake_provider):
    fake_provider.add_rule("meta_error", code=190, status=400, message="Error validating access token")
    error = send_error(transport)
    assert (error.kind, error.disconnect) == (FailureKind.PERMANENT, True)
    assert TOKEN not in str(error)


def test_http_401_is_permanent_and_disconnects(transport, fake_provider):
    fake_provider.add_rule("meta_error", code=0, status=401, message="unauthorized")
    error = send_error(transport)
    assert (error.kind, error.disconnect) == (FailureKind.PERMANENT, True)


def test_another_4xx_is_permanent_with_metas_message(transport, fake_provider):
    fake_provider.add_rule(
        "meta_error", code=100, status=400, message="Invalid parameter", details="Parameter 'to' is invalid"
    )
    error = send_error(transport)
    assert (error.kind, error.disconnect) == (FailureKind.PERMANENT, False)
    assert str(error) == "(#100) Invalid parameter: Parameter 'to' is invalid"
