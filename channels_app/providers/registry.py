"""Provider name → transport for a channel. The one place that reads a channel's API token to send.

Decrypting a token costs a PBKDF2 derivation (100,000 iterations), far more than a send to a nearby
provider, so plaintext tokens are cached in this process keyed on the token row's ``updated_at``:
a rotated token is picked up on the next lookup. The cache lives only in memory and is never logged.
"""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings

from channels_app.models import Channel, ChannelToken
from channels_app.providers.base import FailureKind, Transport, TransportError
from channels_app.providers.meta.transport import MetaTransport
from channels_app.providers.sandbox.transport import EventScheduler, SandboxTransport
from channels_app.providers.whapi.transport import WhapiTransport
from channels_app.services import channel_token_read

_token_cache: dict[tuple[Any, Any], str] = {}
_token_lock = threading.Lock()


def _api_token(channel: Channel) -> str:
    version = (
        ChannelToken.objects.filter(channel=channel, token_type=ChannelToken.TokenType.API_TOKEN)
        .values_list("updated_at", flat=True)
        .first()
    )
    if version is None:
        raise TransportError(
            f"number {channel.display_name!r} has no API token: add one in admin",
            kind=FailureKind.PERMANENT,
            code="no_token",
            disconnect=True,
        )
    key = (channel.pk, version)
    with _token_lock:
        cached = _token_cache.get(key)
    if cached is not None:
        return cached
    token = channel_token_read(channel=channel, token_type=ChannelToken.TokenType.API_TOKEN) or ""
    with _token_lock:
        # Drop the channel's older versions so rotated secrets don't linger in memory.
        for stale in [k for k in _token_cache if k[0] == channel.pk]:
            del _token_cache[stale]
        _token_cache[key] = token
    return token


def transport_for(channel: Channel, *, schedule_events: EventScheduler | None = None) -> Transport:
    """The transport that sends for this channel. ``schedule_events`` feeds the sandbox's simulated statuses."""
    if channel.provider == Channel.Provider.WHAPI:
        return WhapiTransport(base_url=channel.base_url, token=_api_token(channel))
    if channel.provider == Channel.Provider.META:
        return MetaTransport(
            base_url=channel.base_url,
            token=_api_token(channel),
            phone_number_id=channel.meta_phone_number_id,
            graph_version=settings.META_GRAPH_VERSION,
        )
    if channel.provider == Channel.Provider.SANDBOX:
        return SandboxTransport(
            schedule_events=schedule_events,
            delivered_after=float(getattr(settings, "SANDBOX_DELIVERED_AFTER", 1.0)),
            read_after=float(getattr(settings, "SANDBOX_READ_AFTER", 2.0)),
        )
    raise TransportError(
        f"unknown provider {channel.provider!r}", kind=FailureKind.PERMANENT, code="provider"
    )
