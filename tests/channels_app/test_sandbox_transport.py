"""The sandbox transport: accepts at once and schedules "delivered" then "read" for the inbound path."""

from __future__ import annotations

import pytest

from channels_app.providers.base import FailureKind, OutgoingMessage, TransportError
from channels_app.providers.sandbox.transport import SandboxTransport


def test_it_accepts_a_message_and_schedules_delivered_then_read():
    scheduled = []
    transport = SandboxTransport(
        schedule_events=lambda events, delay: scheduled.append((events, delay)),
        delivered_after=1.0,
        read_after=2.0,
    )
    result = transport.send(OutgoingMessage(to="1@s.whatsapp.net", type="text", text="hi"))
    assert result.wa_message_id.startswith("sandbox.")
    assert [(e[0].status, delay) for e, delay in scheduled] == [("delivered", 1.0), ("read", 2.0)]
    assert {e[0].wa_message_id for e, _ in scheduled} == {result.wa_message_id}
    assert scheduled[0][0][0].timestamp < scheduled[1][0][0].timestamp


def test_it_refuses_a_media_message_without_media():
    with pytest.raises(TransportError) as caught:
        SandboxTransport().send(OutgoingMessage(to="1", type="image"))
    assert caught.value.kind == FailureKind.PERMANENT


@pytest.mark.django_db
def test_the_registry_builds_each_providers_transport_without_exposing_the_token(fake_provider):
    from channels_app.providers.meta.transport import MetaTransport
    from channels_app.providers.registry import transport_for
    from channels_app.providers.whapi.transport import WhapiTransport
    from tests.outbox.helpers import provider_channel

    whapi = transport_for(provider_channel(fake_provider, token="tok-whapi-secret"))
    meta = transport_for(provider_channel(fake_provider, provider="meta", token="tok-meta-secret"))
    sandbox = transport_for(provider_channel(None, provider="sandbox"))
    assert isinstance(whapi, WhapiTransport) and isinstance(meta, MetaTransport)
    assert isinstance(sandbox, SandboxTransport)
    assert "tok-whapi-secret" not in repr(whapi) and "tok-meta-secret" not in repr(meta)
