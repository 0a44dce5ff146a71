from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from channels_app import crypto
from channels_app.models import ChannelToken
from channels_app.services import channel_token_read, channel_token_set
from tests.factories import ChannelFactory

pytestmark = pytest.mark.django_db


def _run(**options) -> dict:
    out = StringIO()
    call_command("rotate_encryption_key", stdout=out, **options)
    return json.loads(out.getvalue())


def test_it_reencrypts_every_token_under_the_new_key(settings) -> None:
    settings.ENCRYPTION_KEY = "old-key"
    channels = [ChannelFactory() for _ in range(3)]
    for i, channel in enumerate(channels):
        channel_token_set(channel=channel, token_type="api_token", value=f"token-{i}")
    settings.ENCRYPTION_KEY = "new-key"
    assert _run(old_key="old-key") == {"rotated": 3, "already_rotated": 0, "unreadable": 0}
    for i, channel in enumerate(channels):
        assert channel_token_read(channel=channel, token_type="api_token") == f"token-{i}"


def test_it_can_be_rerun_after_stopping_half_way(settings) -> None:
    settings.ENCRYPTION_KEY = "old-key"
    channels = [ChannelFactory() for _ in range(4)]
    for i, channel in enumerate(channels):
        channel_token_set(channel=channel, token_type="api_token", value=f"token-{i}")
    # Simulate a run that stopped after two rows.
    for token in ChannelToken.objects.order_by("pk")[:2]:
        token.encrypted_value = crypto.encrypt(
            crypto.decrypt(token.encrypted_value, key="old-key"), key="new-key"
        )
        token.save()
    settings.ENCRYPTION_KEY = "new-key"
    assert _run(old_key="old-key") == {"rotated": 2, "already_rotated": 2, "unreadable": 0}
    assert _run(old_key="old-key") == {"rotated": 0, "already_rotated": 4, "unreadable": 0}
    assert [channel_token_read(channel=c, token_type="api_token") for c in channels] == [
        "token-0",
        "token-1",
        "token-2",
        "token-3",
    ]


def test_it_fails_loudly_when_a_token_matches_neither_key(settings) -> None:
    settings.ENCRYPTION_KEY = "third-key"
    channel_token_set(channel=ChannelFactory(), token_type="api_token", value="x")
    with pytest.raises(CommandError, match="cannot decrypt with either key"):
        call_command("rotate_encryption_key", old_key="old-key", new_key="new-key", stdout=StringIO())
