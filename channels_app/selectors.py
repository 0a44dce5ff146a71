from __future__ import annotations

from django.conf import settings

from channels_app.models import Channel


def channel_webhook_url(channel: Channel) -> str:
    """Where the provider must POST this number's events."""
    provider = "meta" if channel.provider == Channel.Provider.META else channel.provider
    if channel.provider == Channel.Provider.SANDBOX:
        provider = "sandbox"
    return f"{settings.PUBLIC_BASE_URL}/webhooks/{provider}/{channel.pk}/"
