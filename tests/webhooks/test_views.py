"""The webhook endpoints: verify, store first, then 200; 401/404/400/413 as the issue says."""

from __future__ import annotations

import json
import uuid

import pytest
from django.test import Client

from channels_app.providers.meta.signature import meta_signature_compute
from inbox.models import Message
from tenants.models import Workspace
from tests.webhooks.conftest import (
    META_APP_SECRET,
    META_VERIFY_TOKEN,
    WHAPI_SECRET,
    post_meta,
    post_whapi,
)
from tests.webhooks.samples import fixture_bytes
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db


def test_it_stores_a_whapi_event_and_answers_200_then_processes_it(
    whapi_channel, django_capture_on_commit_callbacks
):
    body = fixture_bytes("whapi", "whapi_incoming_text.json")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post_whapi(whapi_channel, body)
    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert bytes(event.raw_body) == body
    assert event.channel == whapi_channel
    assert event.event_type == "messages.post"
    assert event.signature_valid is True
    assert len(callbacks) >= 1
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.PROCESSED
    assert Message.objects.filter(
        channel=whapi_channel, wa_message_id="p.w30M7fgwWD4XwHu.g4CA-gBgTwl0rVw"
    ).exists()


def test_it_never_stores_the_authorization_header(whapi_channel):
    response = post_whapi(whapi_channel, fixture_bytes("whapi", "whapi_incoming_text.json"))
    assert response.status_code == 200
    headers = WebhookEvent.objects.get().headers
    assert headers["authorization"] == "[redacted]"
    assert WHAPI_SECRET not in json.dumps(headers)
    assert headers["content-type"] == "application/json"


@pytest.mark.parametrize("secret", [None, "wrong-secret", WHAPI_SECRET + "x", ""])
def test_it_refuses_whapi_without_the_right_secret_and_stores_nothing(whapi_channel, secret, caplog):
    response = post_whapi(whapi_channel, fixture_bytes("whapi", "whapi_incoming_text.json"), secret=secret)
    assert response.status_code == 401
    assert not WebhookEvent.objects.exists()
    assert "webhook rejected" in caplog.text
    if secret:
        assert secret not in caplog.text


def test_it_refuses_a_whapi_body_for_another_whapi_channel(whapi_channel):
    body = json.loads(fixture_bytes("whapi", "whapi_incoming_text.json"))
    body["channel_id"] = "OTHER-CHANNEL"
    response = post_whapi(whapi_channel, json.dumps(body).encode())
    assert response.status_code == 401
    assert not WebhookEvent.objects.exists()


def test_it_accepts_any_body_channel_id_when_the_channel_has_none(whapi_channel):
    whapi_channel.whapi_channel_id = ""
    whapi_channel.save()
    response = post_whapi(whapi_channel, fixture_bytes("whapi", "whapi_incoming_group_text.json"))
    assert response.status_code == 200


def test_it_answers_404_for_an_unknown_channel(whapi_channel, meta_channel):
    class Missing:
        pk = uuid.uuid4()

    assert post_whapi(Missing, b"{}").status_code == 404  # type: ignore[arg-type]
    assert post_meta(Missing, b"{}").status_code == 404  # type: ignore[arg-type]
    # A Meta channel is not a Whapi channel.
    assert post_whapi(meta_channel, b"{}").status_code == 404
    assert not WebhookEvent.objects.exists()


def test_it_answers_400_for_invalid_json_and_keeps_the_body_as_a_failed_event(whapi_channel, meta_channel):
    broken = b'{"messages": [ {"id": "x" '
    assert post_whapi(whapi_channel, broken).status_code == 400
    assert post_meta(meta_channel, broken).status_code == 400
    events = WebhookEvent.objects.order_by("id")
    assert [e.status for e in events] == [WebhookEvent.Status.FAILED, WebhookEvent.Status.FAILED]
    assert all(bytes(e.raw_body) == broken for e in events)
    assert all("invalid JSON" in e.last_error for e in events)
    assert all(e.next_attempt_at is None for e in events)  # never retried by the sweep


def test_it_answers_400_for_json_nested_too_deep_to_parse_and_keeps_it(whapi_channel, meta_channel):
    # json.loads raises RecursionError (not a ValueError) past the interpreter's recursion limit.
    deep = b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert post_whapi(whapi_channel, deep).status_code == 400
    assert post_meta(meta_channel, deep).status_code == 400
    events = WebhookEvent.objects.order_by("id")
    assert [e.status for e in events] == [WebhookEvent.Status.FAILED, WebhookEvent.Status.FAILED]
    assert all(bytes(e.raw_body) == deep for e in events)


def test_it_answers_413_for_a_body_over_3_mb(whapi_channel, meta_channel, settings):
    big = b'{"pad": "' + b"x" * (settings.WEBHOOK_MAX_BODY_BYTES) + b'"}'
    assert post_whapi(whapi_channel, big).status_code == 413
    assert post_meta(meta_channel, big).status_code == 413
    assert not WebhookEvent.objects.exists()


def test_it_stores_webhooks_of_a_suspended_workspace(whapi_channel, team):
    Workspace.objects.filter(pk=team.workspace_a.pk).update(status=Workspace.Status.SUSPENDED)
    response = post_whapi(whapi_channel, fixture_bytes("whapi", "whapi_incoming_text.json"))
    assert response.status_code == 200
    assert WebhookEvent.objects.filter(channel=whapi_channel).count() == 1


def test_it_only_accepts_post_on_the_whapi_endpoint(whapi_channel):
    assert Client().get(f"/webhooks/whapi/{whapi_channel.pk}/").status_code == 405


# ---------------------------------------------------------------- Meta


def test_it_answers_the_meta_verification_handshake_with_the_challenge(meta_channel):
    url = f"/webhooks/meta/{meta_channel.pk}/"
    ok = Client().get(
        url, {"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": META_VERIFY_TOKEN}
    )
    assert ok.status_code == 200
    assert ok.content == b"1158201444"
    assert ok["Content-Type"].startswith("text/plain")
    wrong = Client().get(url, {"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": "nope"})
    assert wrong.status_code == 403
    bad_mode = Client().get(
        url, {"hub.mode": "unsubscribe", "hub.challenge": "1", "hub.verify_token": META_VERIFY_TOKEN}
    )
    assert bad_mode.status_code == 403


def test_it_stores_a_meta_event_signed_over_the_raw_bytes(meta_channel):
    body = fixture_bytes("meta", "meta_text.json")
    response = post_meta(meta_channel, body)
    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert bytes(event.raw_body) == body
    assert event.headers["x-hub-signature-256"] == meta_signature_compute(
        app_secret=META_APP_SECRET, raw_body=body
    )
    assert event.event_type == "messages"


def test_it_accepts_the_escaped_unicode_signature_vector(meta_channel):
    body = fixture_bytes("meta", "meta_signature_vector_unicode.body.txt").rstrip(b"\n")
    header = "sha256=a3b5272745d68ecc088770bbbbc977ec61e3a72903fd0bd26f8895e1f7d5d386"
    assert post_meta(meta_channel, body, signature=header).status_code == 200


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "sha256=" + "0" * 64,
        "sha1=ded1d1d9621cffa39832ccf2b330fa476b4dc8ec2a5d102e1e554312b3f21d42",
        "ded1d1d9621cffa39832ccf2b330fa476b4dc8ec2a5d102e1e554312b3f21d42",
    ],
)
def test_it_refuses_meta_posts_with_a_missing_or_wrong_signature(meta_channel, signature):
    body = fixture_bytes("meta", "meta_signature_vector_ascii.body.txt").rstrip(b"\n")
    assert post_meta(meta_channel, body, signature=signature).status_code == 401
    assert not WebhookEvent.objects.exists()


def test_it_refuses_a_signature_over_re_serialised_json(meta_channel):
    raw = fixture_bytes("meta", "meta_signature_vector_unicode.body.txt").rstrip(b"\n")
    reserialised = json.dumps(json.loads(raw), separators=(",", ":"), ensure_ascii=False).encode()
    assert reserialised != raw
    signature = meta_signature_compute(app_secret=META_APP_SECRET, raw_body=reserialised)
    assert post_meta(meta_channel, raw, signature=signature).status_code == 401


def test_the_app_endpoint_verifies_with_the_settings_token(settings):
    settings.META_VERIFY_TOKEN = "app-verify"
    ok = Client().get(
        "/webhooks/meta/", {"hub.mode": "subscribe", "hub.challenge": "42", "hub.verify_token": "app-verify"}
    )
    assert (ok.status_code, ok.content) == (200, b"42")
    settings.META_VERIFY_TOKEN = ""
    empty = Client().get(
        "/webhooks/meta/", {"hub.mode": "subscribe", "hub.challenge": "42", "hub.verify_token": ""}
    )
    assert empty.status_code == 403


def test_the_app_endpoint_routes_each_number_to_its_channel(settings, team, meta_channel):
    from tests.webhooks.conftest import _meta_channel

    second = _meta_channel(team.workspace_b, "222222222222222")
    settings.META_APP_SECRET = "one-app-secret"
    body = fixture_bytes("meta", "variation_two_numbers.json")
    response = post_meta(None, body, secret="one-app-secret")
    assert response.status_code == 200
    assert sorted(str(e.channel_id) for e in WebhookEvent.objects.all()) == sorted(
        [str(meta_channel.pk), str(second.pk)]
    )


def test_the_app_endpoint_answers_404_when_no_number_is_ours(settings, meta_channel):
    settings.META_APP_SECRET = "one-app-secret"
    body = fixture_bytes("meta", "pywa_status_read.json")  # phone_number_id 1122334455667: not connected
    assert post_meta(None, body, secret="one-app-secret").status_code == 404
    assert not WebhookEvent.objects.exists()


def test_the_app_endpoint_refuses_everything_without_an_app_secret(settings, meta_channel):
    settings.META_APP_SECRET = ""
    body = fixture_bytes("meta", "meta_text.json")
    assert post_meta(None, body, secret="").status_code == 401
    assert not WebhookEvent.objects.exists()


def test_the_app_endpoint_keeps_invalid_json_without_a_channel(settings):
    settings.META_APP_SECRET = "one-app-secret"
    assert post_meta(None, b"not json", secret="one-app-secret").status_code == 400
    event = WebhookEvent.objects.get()
    assert event.channel is None and event.status == WebhookEvent.Status.FAILED


# ---------------------------------------------------------------- sandbox


def test_the_sandbox_endpoint_takes_whapi_format_with_the_webhook_secret(
    team, django_capture_on_commit_callbacks
):
    from channels_app.services import channel_token_set
    from tests.factories import ChannelFactory

    sandbox = ChannelFactory(workspace=team.workspace_a, provider="sandbox")
    channel_token_set(channel=sandbox, token_type="webhook_secret", value="sandbox-secret", audit=False)
    body = fixture_bytes("whapi", "whapi_incoming_text.json")
    assert post_whapi(sandbox, body, secret="wrong", path="sandbox").status_code == 401
    with django_capture_on_commit_callbacks(execute=True):
        assert post_whapi(sandbox, body, secret="sandbox-secret", path="sandbox").status_code == 200
    assert Message.objects.filter(channel=sandbox, text="Hello world").exists()


def test_the_app_endpoint_stores_account_level_changes_without_a_channel(
    settings, django_capture_on_commit_callbacks
):
    settings.META_APP_SECRET = "one-app-secret"
    body = fixture_bytes("meta", "variation_account_update.json")
    with django_capture_on_commit_callbacks(execute=True):
        assert post_meta(None, body, secret="one-app-secret").status_code == 200
    event = WebhookEvent.objects.get()
    assert event.channel is None
    assert (event.status, event.event_type) == ("processed", "unknown:meta.account_update")
