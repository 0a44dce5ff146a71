"""Channels wired to the fake provider, for outbox and send tests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from channels_app.models import Channel
from channels_app.services import channel_token_set
from inbox.services import message_send
from tests.factories import ChannelFactory, ChatFactory

_counter = iter(range(1, 10**9))


def provider_channel(
    fake_provider: Any,
    *,
    workspace: Any = None,
    provider: str = "whapi",
    rate: float = 10_000.0,
    token: str | None = None,
) -> Channel:
    """A channel whose API is the fake provider, with an API token (and a generous send rate)."""
    n = next(_counter)
    extra: dict[str, Any] = {}
    if workspace is not None:
        extra["workspace"] = workspace
    if provider == Channel.Provider.META:
        extra["meta_phone_number_id"] = f"10654035{n:07d}"
    channel: Channel = ChannelFactory(
        provider=provider,
        api_base_url=fake_provider.url if fake_provider else "",
        rate_limit_per_second=rate,
        **extra,
    )
    if provider != Channel.Provider.SANDBOX:
        channel_token_set(
            channel=channel, token_type="api_token", value=token or f"token-{provider}-{n}", audit=False
        )
    return channel


def open_chat(channel: Channel, **kwargs: Any) -> Any:
    """A chat whose Meta window is open (the customer wrote an hour ago)."""
    kwargs.setdefault("window_expires_at", timezone.now() + timedelta(hours=23))
    if channel.provider == Channel.Provider.META:
        kwargs.setdefault("wa_chat_id", f"1650555{next(_counter):04d}")
    return ChatFactory(channel=channel, **kwargs)


def send_text(chat: Any, text: str, *, sender: Any = None, client_message_id: str | None = None) -> Any:
    return message_send(
        chat=chat, sender=sender, client_message_id=client_message_id or f"cmid-{next(_counter)}", text=text
    )


def bodies(fake_provider: Any) -> list[str]:
    """The texts the provider received, in arrival order (Whapi ``body`` or Meta ``text.body``)."""
    out = []
    for request in fake_provider.sends():
        body = request.json or {}
        out.append(body.get("body") or (body.get("text") or {}).get("body") or "")
    return out
