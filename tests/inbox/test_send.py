"""message_send and message_retry: what is refused, what is queued, and what reaches the provider."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import Http404
from django.utils import timezone

from channels_app.models import Channel
from inbox.errors import ChannelUnavailableError, ClientMessageIdConflict, InboxError, WindowClosedError
from inbox.models import Message, MessageEvent
from inbox.services import message_retry, message_send
from outbox.models import OutboxMessage
from outbox.services import outbox_drain
from tests.factories import MessageFactory
from tests.outbox.helpers import open_chat, provider_channel

pytestmark = pytest.mark.django_db


@pytest.fixture
def whapi_chat(team, fake_provider):
    return open_chat(provider_channel(fake_provider, workspace=team.workspace_a))


@pytest.fixture
def meta_chat(team, fake_provider):
    return open_chat(provider_channel(fake_provider, workspace=team.workspace_a, provider="meta"))


def test_it_queues_a_pending_message_and_its_outbox_row_without_calling_the_provider(
    team, whapi_chat, fake_provider, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        message = message_send(chat=whapi_chat, sender=team.bob, client_message_id="c-1", text="Hi Ana")
    assert (message.status, message.direction, message.sender) == (Message.Status.PENDING, "out", team.bob)
    row = OutboxMessage.objects.get(message=message)
    assert (row.status, row.chat, row.channel) == (
        OutboxMessage.Status.QUEUED,
        whapi_chat,
        whapi_chat.channel,
    )
    assert row.payload["to"] == whapi_chat.wa_chat_id
    assert list(message.events.values_list("kind", flat=True)) == [MessageEvent.Kind.QUEUED]
    whapi_chat.refresh_from_db()
    assert whapi_chat.last_message_preview == "Hi Ana"
    assert fake_provider.requests == []
    assert callbacks, "the realtime push and the drain kick wait for commit"


def test_a_repeated_client_message_id_returns_the_same_message_and_sends_once(
    team, whapi_chat, fake_provider
):
    first = message_send(chat=whapi_chat, sender=team.bob, client_message_id="dup", text="once")
    again = message_send(chat=whapi_chat, sender=team.bob, client_message_id="dup", text="once")
    assert again.pk == first.pk
    outbox_drain()
    third = message_send(chat=whapi_chat, sender=team.bob, client_message_id="dup", text="once")
    outbox_drain()
    assert third.pk == first.pk
    assert Message.objects.filter(client_message_id="dup").count() == 1
    assert OutboxMessage.objects.filter(message=first).count() == 1
    assert len(fake_provider.sends()) == 1


def test_a_reused_client_message_id_with_another_body_is_refused(team, whapi_chat):
    message_send(chat=whapi_chat, sender=team.bob, client_message_id="same", text="first")
    with pytest.raises(ClientMessageIdConflict):
        message_send(chat=whapi_chat, sender=team.bob, client_message_id="same", text="second")


@pytest.mark.parametrize("window", [None, timedelta(minutes=-1)])
def test_free_text_to_a_meta_chat_with_a_closed_window_is_refused_before_queueing(team, meta_chat, window):
    meta_chat.window_expires_at = None if window is None else timezone.now() + window
    meta_chat.save()
    with pytest.raises(WindowClosedError, match="24-hour"):
        message_send(chat=meta_chat, sender=team.bob, client_message_id="late", text="hello?")
    assert not OutboxMessage.objects.exists()
    assert not Message.objects.filter(client_message_id="late").exists()


def test_a_template_goes_to_a_meta_chat_whose_window_is_closed(team, meta_chat, fake_provider):
    meta_chat.window_expires_at = timezone.now() - timedelta(days=2)
    meta_chat.save()
    template = {
        "name": "order_update",
        "language": "en_US",
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}],
    }
    message = message_send(
        chat=meta_chat, sender=team.bob, client_message_id="tpl", type="template", template=template
    )
    outbox_drain()
    [request] = fake_provider.sends()
    assert request.json["type"] == "template"
    assert request.json["template"] == {
        "name": "order_update",
        "language": {"code": "en_US"},
        "components": template["components"],
    }
    message.refresh_from_db()
    assert message.status == Message.Status.SENT


def test_a_template_to_a_whapi_number_is_refused(team, whapi_chat):
    with pytest.raises(InboxError, match="Meta"):
        message_send(
            chat=whapi_chat,
            sender=team.bob,
            client_message_id="t",
            type="template",
            template={"name": "x", "language": "en"},
        )


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"text": "   "}, "needs some text"),
        ({"type": "image"}, "attach a file"),
        ({"type": "location", "text": "x"}, "cannot send"),
        ({"type": "image", "media_url": "ftp://x"}, "https"),
    ],
)
def test_it_refuses_what_cannot_be_sent_with_a_clear_reason(team, whapi_chat, kwargs, reason):
    with pytest.raises(InboxError, match=reason):
        message_send(chat=whapi_chat, sender=team.bob, client_message_id="bad", **kwargs)


def test_a_disconnected_number_refuses_new_messages(team, whapi_chat):
    Channel.objects.filter(pk=whapi_chat.channel_id).update(status=Channel.Status.DISCONNECTED)
    whapi_chat.channel.refresh_from_db()
    with pytest.raises(ChannelUnavailableError, match="disconnected"):
        message_send(chat=whapi_chat, sender=team.bob, client_message_id="x", text="hi")


def test_a_reply_quotes_the_original_message_on_the_wire(team, whapi_chat, meta_chat, fake_provider):
    original = MessageFactory(chat=whapi_chat, wa_message_id="abcd1234-quoted")
    message_send(chat=whapi_chat, sender=team.bob, client_message_id="r1", text="Sure", reply_to=original)
    meta_original = MessageFactory(chat=meta_chat, wa_message_id="wamid.ORIGINAL")
    message_send(chat=meta_chat, sender=team.bob, client_message_id="r2", text="Yes", reply_to=meta_original)
    outbox_drain()
    whapi_request, meta_request = sorted(fake_provider.sends(), key=lambda r: r.provider != "whapi")
    assert whapi_request.json["quoted"] == "abcd1234-quoted"
    assert meta_request.json["context"] == {"message_id": "wamid.ORIGINAL"}


def test_a_reply_to_another_chats_message_is_refused(team, whapi_chat):
    with pytest.raises(InboxError, match="same chat"):
        message_send(
            chat=whapi_chat, sender=team.bob, client_message_id="x", text="hi", reply_to=team.message_b
        )


@pytest.mark.parametrize("kind", ["image", "video", "audio", "document"])
def test_media_by_url_reaches_both_providers(team, whapi_chat, meta_chat, fake_provider, kind):
    for chat in (whapi_chat, meta_chat):
        message_send(
            chat=chat,
            sender=team.bob,
            client_message_id=f"{kind}-{chat.pk}",
            type=kind,
            media_url="https://files.example.com/a.bin",
            caption="see",
            filename="a.pdf",
        )
    outbox_drain()
    by_provider = {r.provider: r for r in fake_provider.sends()}
    assert by_provider["whapi"].path == f"/messages/{kind}"
    assert by_provider["whapi"].json["media"] == "https://files.example.com/a.bin"
    assert by_provider["meta"].json[kind]["link"] == "https://files.example.com/a.bin"


def test_an_uploaded_file_is_stored_and_uploaded_to_each_provider(team, whapi_chat, meta_chat, fake_provider):
    content = b"%PDF-1.4 invoice"
    for chat in (whapi_chat, meta_chat):
        upload = SimpleUploadedFile("invoice.pdf", content, content_type="application/pdf")
        message = message_send(
            chat=chat,
            sender=team.bob,
            client_message_id=f"file-{chat.pk}",
            type="document",
            media_file=upload,
            caption="your invoice",
        )
        assert message.media_file.name.endswith(".pdf")
        assert message.media_filename == "invoice.pdf"
    outbox_drain()
    whapi_send = next(r for r in fake_provider.sends() if r.provider == "whapi")
    prefix = "data:application/pdf;name=invoice.pdf;base64,"
    assert whapi_send.json["media"].startswith(prefix)
    assert base64.b64decode(whapi_send.json["media"][len(prefix) :]) == content
    assert whapi_send.json["filename"] == "invoice.pdf"
    upload_request = next(r for r in fake_provider.requests if r.path.endswith("/media"))
    assert upload_request.files["file"]["content"] == content
    meta_send = next(r for r in fake_provider.sends() if r.provider == "meta")
    assert meta_send.json["document"] == {
        "id": upload_request.message_id,
        "caption": "your invoice",
        "filename": "invoice.pdf",
    }


def test_the_retry_button_sends_a_failed_message_again(team, whapi_chat, fake_provider):
    fake_provider.add_rule("whapi_error", status=400, message="Wrong request parameters")
    message = message_send(chat=whapi_chat, sender=team.bob, client_message_id="again", text="retry me")
    outbox_drain()
    message.refresh_from_db()
    assert (message.status, message.error_message) == (Message.Status.FAILED, "Wrong request parameters")

    retried = message_retry(message=message, acting_user=team.bob)
    assert retried.status == Message.Status.PENDING
    outbox_drain()
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert message.error_message == ""
    assert len(fake_provider.sends()) == 2
    assert message.events.filter(kind=MessageEvent.Kind.RETRY, detail__manual=True).count() == 1
    from tenants.models import AuditLog

    assert AuditLog.objects.filter(
        action="message.retried", actor=team.bob, target_id=str(message.pk)
    ).exists()


def test_only_a_failed_message_can_be_retried(team, whapi_chat):
    message = message_send(chat=whapi_chat, sender=team.bob, client_message_id="p", text="pending")
    with pytest.raises(InboxError, match="failed"):
        message_retry(message=message, acting_user=team.bob)


def test_charlie_cannot_retry_workspace_a_messages(team, whapi_chat, fake_provider):
    fake_provider.add_rule("whapi_error", status=400)
    message = message_send(chat=whapi_chat, sender=team.bob, client_message_id="a", text="A only")
    outbox_drain()
    with pytest.raises(Http404):
        message_retry(message=message, acting_user=team.charlie)
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
