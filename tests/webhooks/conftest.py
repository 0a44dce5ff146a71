"""Channels with real (encrypted) tokens and helpers that POST like the providers do."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from channels_app.models import Channel
from channels_app.providers.meta.signature import meta_signature_compute
from channels_app.services import channel_token_set
from tests.factories import ChannelFactory

WHAPI_SECRET = "whapi-webhook-secret-0123456789"
META_APP_SECRET = "test_app_secret"  # the secret of the signature vectors in wire-notes.md
META_VERIFY_TOKEN = "vibecoding"
META_PID = "106540352242922"  # phone_number_id of Meta's published samples
PYWA_PID = "1122334455667"  # phone_number_id of pywa's captured samples


@pytest.fixture(autouse=True)
def drain_keys_of_this_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """The queued-drain slot and the running-drain mark are Redis keys: each test (and xdist worker) gets
    its own, so one test's running drain never holds another's kicks back."""
    import uuid

    from webhooks import tasks

    test_id = uuid.uuid4().hex
    monkeypatch.setattr(tasks.DrainQueuedSlot, "KEY", f"test:drain-queued:{test_id}")
    monkeypatch.setattr(tasks.DrainRunning, "KEY", f"test:drain-running:{test_id}")


@pytest.fixture
def whapi_channel(team: Any) -> Channel:
    channel = team.channel_a
    channel.provider = Channel.Provider.WHAPI
    channel.whapi_channel_id = "MANTIS-M72HC"
    channel.save()
    channel_token_set(channel=channel, token_type="webhook_secret", value=WHAPI_SECRET, audit=False)
    channel_token_set(channel=channel, token_type="api_token", value="whapi-api-token", audit=False)
    return channel


def _meta_channel(workspace: Any, pid: str) -> Channel:
    channel: Channel = ChannelFactory(
        workspace=workspace, provider=Channel.Provider.META, meta_phone_number_id=pid
    )  # type: ignore[assignment]
    channel_token_set(channel=channel, token_type="app_secret", value=META_APP_SECRET, audit=False)
    channel_token_set(channel=channel, token_type="verify_token", value=META_VERIFY_TOKEN, audit=False)
    channel_token_set(channel=channel, token_type="api_token", value="meta-access-token", audit=False)
    return channel


@pytest.fixture
def meta_channel(team: Any) -> Channel:
    return _meta_channel(team.workspace_a, META_PID)


@pytest.fixture
def pywa_channel(team: Any) -> Channel:
    return _meta_channel(team.workspace_a, PYWA_PID)


def post_whapi(
    channel: Channel, body: bytes, *, secret: str | None = WHAPI_SECRET, path: str = "whapi"
) -> Any:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"} if secret is not None else {}
    return Client().post(
        f"/webhooks/{path}/{channel.pk}/", data=body, content_type="application/json", **headers
    )


def post_meta(
    channel: Channel | None, body: bytes, *, secret: str = META_APP_SECRET, signature: str | None = None
) -> Any:
    url = f"/webhooks/meta/{channel.pk}/" if channel is not None else "/webhooks/meta/"
    header = signature if signature is not None else meta_signature_compute(app_secret=secret, raw_body=body)
    return Client().post(url, data=body, content_type="application/json", HTTP_X_HUB_SIGNATURE_256=header)
