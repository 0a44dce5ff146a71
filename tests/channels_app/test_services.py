from __future__ import annotations

import logging

import pytest

from channels_app.models import Channel, ChannelToken
from channels_app.services import (
    ChannelError,
    ChannelTokenError,
    channel_create,
    channel_pause,
    channel_resume,
    channel_token_read,
    channel_token_set,
)
from tenants.models import AuditLog
from tests.factories import ChannelFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db


def test_tokens_are_encrypted_at_rest_and_readable_by_the_sender() -> None:
    channel = ChannelFactory()
    channel_token_set(channel=channel, token_type=ChannelToken.TokenType.API_TOKEN, value="whapi-plain-token")
    stored = ChannelToken.objects.get(channel=channel)
    assert "whapi-plain-token" not in stored.encrypted_value
    assert channel_token_read(channel=channel, token_type="api_token") == "whapi-plain-token"
    assert channel_token_read(channel=channel, token_type="app_secret") is None


def test_an_unreadable_token_names_the_channel_but_not_the_value(settings) -> None:
    channel = ChannelFactory(display_name="Sales line")
    channel_token_set(channel=channel, token_type="api_token", value="super-secret-value")
    settings.ENCRYPTION_KEY = "a-different-key"
    with pytest.raises(ChannelTokenError) as excinfo:
        channel_token_read(channel=channel, token_type="api_token")
    assert str(channel.pk) in str(excinfo.value)
    assert "Sales line" in str(excinfo.value)
    assert "super-secret-value" not in str(excinfo.value)


def test_channel_create_stores_tokens_and_audits_without_secrets(caplog) -> None:
    workspace = WorkspaceFactory()
    with caplog.at_level(logging.DEBUG):
        channel = channel_create(
            workspace=workspace,
            provider="meta",
            display_name="Meta line",
            phone_number="+15550001",
            meta_phone_number_id="106540352242922",
            tokens={"api_token": "EAAG-very-secret", "app_secret": "s3cr3t"},
        )
    assert sorted(channel.tokens.values_list("token_type", flat=True)) == ["api_token", "app_secret"]
    entry = AuditLog.objects.get(action="channel.created")
    assert "EAAG-very-secret" not in str(entry.data)
    assert "EAAG-very-secret" not in caplog.text


def test_channel_create_refuses_bad_input_clearly() -> None:
    workspace = WorkspaceFactory()
    with pytest.raises(ChannelError, match="unknown provider"):
        channel_create(workspace=workspace, provider="telegram", display_name="x", phone_number="1")
    with pytest.raises(ChannelError, match="phone_number_id"):
        channel_create(workspace=workspace, provider="meta", display_name="x", phone_number="1")
    with pytest.raises(ChannelError, match="rate limit"):
        channel_create(
            workspace=workspace, provider="whapi", display_name="x", phone_number="1", rate_limit_per_second=0
        )


def test_channel_create_respects_the_plan_limit() -> None:
    workspace = WorkspaceFactory(max_channels=1)
    channel_create(workspace=workspace, provider="sandbox", display_name="one", phone_number="1")
    with pytest.raises(ChannelError, match="plan limit"):
        channel_create(workspace=workspace, provider="sandbox", display_name="two", phone_number="2")


def test_pause_and_resume_change_status_and_audit(django_capture_on_commit_callbacks) -> None:
    channel = ChannelFactory()
    channel_pause(channel=channel)
    assert Channel.objects.get(pk=channel.pk).status == Channel.Status.PAUSED
    channel_resume(channel=channel)
    assert Channel.objects.get(pk=channel.pk).status == Channel.Status.CONNECTED
    assert list(AuditLog.objects.order_by("created_at").values_list("action", flat=True)) == [
        "channel.paused",
        "channel.resumed",
    ]


def test_inbound_marks_the_channel_at_most_every_few_seconds(django_assert_num_queries) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from channels_app.services import INBOUND_MARK_PRECISION, _inbound_marked, channel_mark_inbound

    channel = ChannelFactory()
    channel_mark_inbound(channel=channel)
    first = Channel.objects.get(pk=channel.pk).last_inbound_at
    assert first is not None
    with django_assert_num_queries(0):  # this process marked it just now: not even a query (no row lock)
        channel_mark_inbound(channel=channel)
    assert Channel.objects.get(pk=channel.pk).last_inbound_at == first
    # Later (or from another process, which has its own memo): the stale mark is written again.
    _inbound_marked.clear()
    Channel.objects.filter(pk=channel.pk).update(
        last_inbound_at=timezone.now() - INBOUND_MARK_PRECISION - timedelta(seconds=1)
    )
    channel_mark_inbound(channel=channel)
    rewritten = Channel.objects.get(pk=channel.pk).last_inbound_at
    assert rewritten is not None and rewritten >= first  # stale: written again
