"""Writes for channels (WhatsApp numbers) and their encrypted tokens.

Token plaintext exists only in memory: set through ``channel_token_set``, read through
``channel_token_read`` by the code that sends or verifies, never logged or shown.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from channels_app import crypto
from channels_app.models import Channel, ChannelToken
from tenants.models import Workspace
from tenants.realtime import send_event_on_commit, workspace_group
from tenants.services import audit_record

logger = logging.getLogger(__name__)

TokenType = ChannelToken.TokenType


class ChannelError(Exception):
    """A refused channel operation, with a message fit to show the person who asked."""


class ChannelTokenError(Exception):
    """A stored token could not be read. The message names the channel, never the value."""


def channel_create(
    *,
    workspace: Workspace,
    provider: str,
    display_name: str,
    phone_number: str,
    meta_phone_number_id: str = "",
    whapi_channel_id: str = "",
    api_base_url: str = "",
    rate_limit_per_second: float | None = None,
    tokens: Mapping[str, str] | None = None,
    actor: Any = None,
) -> Channel:
    if provider not in Channel.Provider.values:
        raise ChannelError(f"unknown provider {provider!r}: use one of {', '.join(Channel.Provider.values)}")
    if not (display_name or "").strip():
        raise ChannelError("a channel needs a name")
    if not (phone_number or "").strip():
        raise ChannelError("a channel needs a phone number")
    if provider == Channel.Provider.META and not meta_phone_number_id:
        raise ChannelError("a Meta channel needs its phone_number_id")
    if rate_limit_per_second is not None and rate_limit_per_second <= 0:
        raise ChannelError("the rate limit must be a positive number of messages per second")
    if meta_phone_number_id and Channel.objects.filter(meta_phone_number_id=meta_phone_number_id).exists():
        raise ChannelError(f"phone_number_id {meta_phone_number_id} is already connected")
    with transaction.atomic(savepoint=False):
        if workspace.channels.count() >= workspace.max_channels:
            raise ChannelError(
                f"workspace {workspace.name!r} has reached its plan limit of {workspace.max_channels} numbers"
            )
        channel = Channel.objects.create(
            workspace=workspace,
            provider=provider,
            display_name=display_name.strip(),
            phone_number=phone_number.strip(),
            meta_phone_number_id=meta_phone_number_id,
            whapi_channel_id=whapi_channel_id,
            api_base_url=api_base_url,
            rate_limit_per_second=rate_limit_per_second,
        )
        for token_type, value in (tokens or {}).items():
            if value:
                channel_token_set(
                    channel=channel, token_type=token_type, value=value, actor=actor, audit=False
                )
        audit_record(
            action="channel.created",
            workspace=workspace,
            actor=actor,
            target=channel,
            data={"provider": provider, "tokens": sorted(t for t, v in (tokens or {}).items() if v)},
        )
    return channel


def channel_token_set(
    *, channel: Channel, token_type: str, value: str, actor: Any = None, audit: bool = True
) -> ChannelToken:
    if token_type not in TokenType.values:
        raise ChannelError(f"unknown token type {token_type!r}")
    if not value:
        raise ChannelError("a token cannot be empty")
    token, _ = ChannelToken.objects.update_or_create(
        channel=channel, token_type=token_type, defaults={"encrypted_value": crypto.encrypt(value)}
    )
    if audit:
        audit_record(
            action="channel.token_rotated",
            workspace=channel.workspace,
            actor=actor,
            target=channel,
            data={"token_type": token_type},
        )
    return token


def channel_token_read(*, channel: Channel, token_type: str) -> str | None:
    """The plaintext of a channel's token, or None when it has none. For senders and verifiers only."""
    token = ChannelToken.objects.filter(channel=channel, token_type=token_type).first()
    if token is None:
        return None
    try:
        return crypto.decrypt(token.encrypted_value)
    except crypto.DecryptionError as exc:
        raise ChannelTokenError(
            f"cannot decrypt the {token_type} of channel {channel.pk} ({channel.display_name}): {exc}"
        ) from None


def channel_token_types(*, channel: Channel) -> list[str]:
    return sorted(channel.tokens.values_list("token_type", flat=True))


def channel_status_set(
    *, channel: Channel, status: str, detail: str = "", paused_until: datetime | None = None
) -> bool:
    """Set a channel's status; returns whether it changed. Pushes channel.status after commit."""
    if status not in Channel.Status.values:
        raise ChannelError(f"unknown channel status {status!r}")
    if channel.status == status and channel.status_detail == detail and channel.paused_until == paused_until:
        return False
    channel.status = status
    channel.status_detail = detail[:255]
    channel.paused_until = paused_until
    channel.save(update_fields=["status", "status_detail", "paused_until", "updated_at"])
    logger.info("channel %s status %s", channel.pk, status)
    send_event_on_commit(
        workspace_group(channel.workspace_id),
        {"type": "channel.status", "channel_id": str(channel.pk), "status": status},
    )
    # Integrators' event subscriptions hear it too (queued in this transaction). Imported late: the
    # outbox sits above channels_app.
    from outbox.subscriptions import channel_event_data, subscription_events_emit

    subscription_events_emit(
        workspace=channel.workspace_id,
        event_type="channel.status",
        data=channel_event_data(channel),
        channel=channel,
    )
    return True


def channel_pause(*, channel: Channel, actor: Any = None, until: datetime | None = None) -> Channel:
    channel_status_set(
        channel=channel, status=Channel.Status.PAUSED, detail="Paused by an admin", paused_until=until
    )
    audit_record(action="channel.paused", workspace=channel.workspace, actor=actor, target=channel)
    return channel


def channel_resume(*, channel: Channel, actor: Any = None) -> Channel:
    channel_status_set(channel=channel, status=Channel.Status.CONNECTED, detail="", paused_until=None)
    audit_record(action="channel.resumed", workspace=channel.workspace, actor=actor, target=channel)
    return channel


def channel_update(*, channel: Channel, actor: Any = None, **fields: Any) -> Channel:
    editable = {
        "display_name",
        "phone_number",
        "whapi_channel_id",
        "meta_phone_number_id",
        "api_base_url",
        "rate_limit_per_second",
    }
    unknown = set(fields) - editable
    if unknown:
        raise ChannelError(f"cannot change {', '.join(sorted(unknown))}")
    changed = [name for name, value in fields.items() if getattr(channel, name) != value]
    for name in changed:
        setattr(channel, name, fields[name])
    if changed:
        channel.save(update_fields=[*changed, "updated_at"])
        audit_record(
            action="channel.changed",
            workspace=channel.workspace,
            actor=actor,
            target=channel,
            data={"fields": changed},
        )
    return channel


# Every inbound event of a number would otherwise update (and row-lock until commit) the same channel
# row, serializing concurrent processors of one busy number; a few seconds' precision is plenty here.
INBOUND_MARK_PRECISION = timedelta(seconds=5)


# channel id → when this process last marked it: at most one UPDATE per channel per precision window per
# process (the UPDATE alone, even matching no row, was 7 % of processing an event).
_inbound_marked: dict[Any, datetime] = {}


def channel_mark_inbound(*, channel: Channel) -> None:
    now = timezone.now()
    last = _inbound_marked.get(channel.pk)
    if last is not None and now - last < INBOUND_MARK_PRECISION:
        return
    _inbound_marked[channel.pk] = now
    Channel.objects.filter(pk=channel.pk).filter(
        Q(last_inbound_at__isnull=True) | Q(last_inbound_at__lt=now - INBOUND_MARK_PRECISION)
    ).update(last_inbound_at=now)
