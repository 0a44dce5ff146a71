"""Event subscriptions (outgoing webhooks): integrators' URLs that hear what happens in a workspace.

Flow:
1. A change in the inbox calls ``subscription_events_emit`` inside its own transaction (the hook is in
   ``inbox.realtime``'s push helpers, which every change passes through). It writes one outbox row per
   matching active subscription (``message_type="event_delivery"``), so an event exists if and only if
   the change committed, and nothing here waits on the network.
2. The outbox drain claims the row like any other and calls ``event_delivery_sender`` (registered in
   ``outbox.dispatch.SENDERS``): one signed POST. Failures raise ``TransportError`` and get the outbox's
   retries with backoff.
3. The receiver checks ``X-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>`` and dedupes on
   ``X-Event-Id`` (a retry after a lost answer sends the same id and body).

Event rows carry the event's channel (the outbox needs one) but no chat: a subscriber that is down
must never hold back a chat's WhatsApp messages, which the outbox keeps in order per chat.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from channels_app import crypto
from channels_app.models import Channel
from channels_app.providers.base import FailureKind, SendResult, TransportError
from outbox.models import EventSubscription, OutboxMessage
from outbox.pinned_http import pinned_post
from tenants.models import Workspace
from tenants.services import audit_record

logger = logging.getLogger(__name__)

EVENT_DELIVERY = "event_delivery"
EVENT_TYPES = tuple(EventSubscription.EventType.values)
SECRET_PREFIX = "whsec_"
# Behind agents' own messages in the queue: a customer waiting beats an integration waiting.
DELIVERY_PRIORITY = -1
CONNECT_TIMEOUT = 3.05
READ_TIMEOUT = 10.0
USER_AGENT = "wa-inbox-webhooks/1"


class SubscriptionError(Exception):
    """A refused subscription change, with a message fit to show the admin who asked."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class IssuedSecret:
    subscription: EventSubscription
    secret: str  # the only time the plaintext leaves this module


# ---------------------------------------------------------------- management


def _validated_url(url: str) -> str:
    url = (url or "").strip()
    if not url.lower().startswith(("https://", "http://")):
        raise SubscriptionError("The URL must start with https:// (or http://).", field="url")
    blocked = subscription_url_blocked(url, resolve=False)
    if blocked:
        raise SubscriptionError(blocked, field="url")
    return url


def _blocked_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


REFUSED_ADDRESS = "The URL points at a private or local address; events only go to public addresses."


@dataclass(frozen=True)
class UrlScreening:
    """What screening a subscription's URL found."""

    refused: str = ""  # why events may not be sent there ('' if they may)
    # Where to connect: the URL's literal address, or every address its name resolved to (all judged).
    # Empty when nothing was resolved: a name that does not resolve, or ``resolve=False``.
    addresses: tuple[str, ...] = ()


def subscription_url_screening(url: str, *, resolve: bool = True) -> UrlScreening:
    """Judge ``url``'s host: refused if it is, or resolves to, a private, loopback, link-local or otherwise
    non-public address (unless ``SUBSCRIPTIONS_ALLOW_PRIVATE_URLS``); else the addresses to connect to.

    At creation only a literal address is judged (``resolve=False``: a name may not resolve yet). Every
    delivery resolves the name once, here, and connects to one of the addresses returned
    (``outbox.pinned_http``): a second lookup could answer otherwise (DNS rebinding).
    """
    allow_private = settings.SUBSCRIPTIONS_ALLOW_PRIVATE_URLS
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host:
        return UrlScreening() if allow_private else UrlScreening(refused="The URL has no host.")
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        addresses = [host]  # a literal address is its own answer
    except ValueError:  # a name
        if not allow_private and (host.lower() == "localhost" or host.lower().endswith(".localhost")):
            return UrlScreening(refused=REFUSED_ADDRESS)
        if not resolve:
            return UrlScreening()
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            # The name as requests puts it on the wire (IDNA 2008, like the Host header and TLS SNI).
            prepared = requests.PreparedRequest()
            prepared.prepare_url(url, None)
            name = urlsplit(str(prepared.url)).hostname or host
            infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError, ValueError, requests.RequestException):
            return UrlScreening()  # unresolvable: the delivery fails as a connection error, and is retried
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not allow_private and any(_blocked_address(address) for address in addresses):
        return UrlScreening(refused=REFUSED_ADDRESS)
    return UrlScreening(addresses=tuple(addresses))


def subscription_url_blocked(url: str, *, resolve: bool = True) -> str:
    """Why events may not be sent to ``url`` ('' if they may): see ``subscription_url_screening``."""
    return subscription_url_screening(url, resolve=resolve).refused


def _validated_event_types(event_types: Any) -> list[str]:
    if not isinstance(event_types, list | tuple) or not event_types:
        raise SubscriptionError("Choose at least one event type.", field="event_types")
    unknown = sorted({str(t) for t in event_types} - set(EVENT_TYPES))
    if unknown:
        raise SubscriptionError(
            f"Unknown event type {unknown[0]!r}: use {', '.join(EVENT_TYPES)}.", field="event_types"
        )
    # Keep the caller's order, without repeats.
    return list(dict.fromkeys(str(t) for t in event_types))


def _new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def subscription_create(
    *, workspace: Workspace, url: str, event_types: list[str], description: str = "", actor: Any = None
) -> IssuedSecret:
    secret = _new_secret()
    with transaction.atomic(savepoint=False):
        subscription = EventSubscription.objects.create(
            workspace=workspace,
            url=_validated_url(url),
            event_types=_validated_event_types(event_types),
            description=(description or "").strip()[:200],
            encrypted_secret=crypto.encrypt(secret),
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
        )
        audit_record(
            action="subscription.created",
            workspace=workspace,
            actor=actor,
            target=subscription,
            data={"url": subscription.url, "event_types": subscription.event_types},
        )
    return IssuedSecret(subscription=subscription, secret=secret)


def subscription_update(
    *, subscription: EventSubscription, actor: Any = None, **fields: Any
) -> EventSubscription:
    editable = {"url", "event_types", "description", "active"}
    unknown = set(fields) - editable
    if unknown:
        raise SubscriptionError(f"Cannot change {', '.join(sorted(unknown))}.")
    if "url" in fields:
        fields["url"] = _validated_url(fields["url"])
    if "event_types" in fields:
        fields["event_types"] = _validated_event_types(fields["event_types"])
    if "description" in fields:
        fields["description"] = (fields["description"] or "").strip()[:200]
    if "active" in fields:
        fields["active"] = bool(fields["active"])
    changed = [name for name, value in fields.items() if getattr(subscription, name) != value]
    if not changed:
        return subscription
    with transaction.atomic(savepoint=False):
        for name in changed:
            setattr(subscription, name, fields[name])
        subscription.save(update_fields=[*changed, "updated_at"])
        audit_record(
            action="subscription.changed",
            workspace=subscription.workspace,
            actor=actor,
            target=subscription,
            data={"fields": changed},
        )
    return subscription


def subscription_rotate_secret(*, subscription: EventSubscription, actor: Any = None) -> IssuedSecret:
    """A new signing secret at once. Deliveries still queued are signed with it when they go."""
    secret = _new_secret()
    with transaction.atomic(savepoint=False):
        subscription.encrypted_secret = crypto.encrypt(secret)
        subscription.save(update_fields=["encrypted_secret", "updated_at"])
        audit_record(
            action="subscription.secret_rotated",
            workspace=subscription.workspace,
            actor=actor,
            target=subscription,
        )
    return IssuedSecret(subscription=subscription, secret=secret)


def subscription_delete(*, subscription: EventSubscription, actor: Any = None) -> None:
    with transaction.atomic(savepoint=False):
        audit_record(
            action="subscription.deleted",
            workspace=subscription.workspace,
            actor=actor,
            target=subscription,
            data={"url": subscription.url},
        )
        # Queued deliveries fail at send time with "subscription gone" (no secret to sign with).
        subscription.delete()


# ---------------------------------------------------------------- emitting


def subscription_events_emit(
    *, workspace: Any, event_type: str, data: dict[str, Any], channel: Channel | Any = None
) -> list[OutboxMessage]:
    """Queue one delivery per active subscription of ``workspace`` that wants ``event_type``.

    Runs in the caller's transaction: the rows commit (and the drain is kicked) with the change they
    describe, or not at all. ``channel`` (or ``data["channel_id"]``) is the event's number.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    workspace_id = getattr(workspace, "pk", workspace)
    # Few subscriptions per workspace: filter event types in Python (JSON containment isn't portable to SQLite).
    subscriptions = [
        sub
        for sub in EventSubscription.objects.filter(workspace_id=workspace_id, active=True).only(
            "id", "event_types"
        )
        if event_type in sub.event_types
    ]
    if not subscriptions:
        return []
    channel_id = getattr(channel, "pk", channel) or data.get("channel_id")
    if not channel_id:
        logger.warning("event %s for workspace %s has no channel; not delivered", event_type, workspace_id)
        return []
    from outbox.services import outbox_enqueue  # the outbox state machine imports inbox, which imports us

    channel_obj = channel if isinstance(channel, Channel) else Channel.objects.get(pk=str(channel_id))
    created_at = timezone.now()
    rows = []
    for sub in subscriptions:
        rows.append(
            outbox_enqueue(
                channel=channel_obj,
                message_type=EVENT_DELIVERY,
                priority=DELIVERY_PRIORITY,
                payload={
                    "subscription_id": sub.pk,
                    "event_id": str(uuid.uuid4()),
                    "event_type": event_type,
                    "workspace_id": str(workspace_id),
                    "created_at": created_at.isoformat(),
                    "data": data,
                },
            )
        )
    return rows


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def message_event_data(message: Any) -> dict[str, Any]:
    """What subscribers learn about a message (the same fields as the API's message, minus the timeline)."""
    return {
        "message": {
            "id": message.pk,
            "chat_id": message.chat_id,
            "channel_id": str(message.channel_id),
            "wa_message_id": message.wa_message_id,
            "client_message_id": message.client_message_id,
            "direction": message.direction,
            "type": message.type,
            "text": message.text,
            "status": message.status,
            "error_code": message.error_code,
            "media_url": message.media_url,
            "sender_id": message.sender_id,
            "created_at": _iso(message.created_at),
            "provider_timestamp": _iso(message.provider_timestamp),
            "edited_at": _iso(message.edited_at),
            "deleted_at": _iso(message.deleted_at),
        },
        "channel_id": str(message.channel_id),
    }


def chat_event_data(chat: Any) -> dict[str, Any]:
    return {
        "chat": {
            "id": chat.pk,
            "channel_id": str(chat.channel_id),
            "wa_chat_id": chat.wa_chat_id,
            "contact_name": chat.contact_name,
            "contact_phone": chat.contact_phone,
            "status": chat.status,
            "assignee_id": chat.assignee_id,
            "unread_count": chat.unread_count,
            "last_message_preview": chat.last_message_preview,
            "last_message_at": _iso(chat.last_message_at),
        },
        "channel_id": str(chat.channel_id),
    }


def channel_event_data(channel: Any) -> dict[str, Any]:
    return {
        "channel_id": str(channel.pk),
        "status": channel.status,
        "status_detail": channel.status_detail,
        "paused_until": _iso(channel.paused_until),
    }


# ---------------------------------------------------------------- delivering


def delivery_body(payload: dict[str, Any]) -> bytes:
    """The exact bytes POSTed (and signed). Rebuilt identically on every retry of a row."""
    event = {
        "id": payload["event_id"],
        "type": payload["event_type"],
        "created_at": payload["created_at"],
        "workspace_id": payload.get("workspace_id"),
        "data": payload["data"],
    }
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def delivery_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _retry_after(response: requests.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None


def subscription_delivery_send(outbox_row: OutboxMessage) -> SendResult:
    """POST one event delivery, signed. Raises TransportError saying whether to retry.

    TRANSIENT: timeouts, connection errors, 5xx. RATE_LIMITED: 429 (with its Retry-After).
    PERMANENT: other 3xx/4xx, or the subscription is gone, paused, or its secret unreadable.
    """
    payload = outbox_row.payload
    subscription = EventSubscription.objects.filter(pk=payload.get("subscription_id")).first()
    if subscription is None:
        raise TransportError(
            "the subscription was deleted", kind=FailureKind.PERMANENT, code="subscription_gone"
        )
    if not subscription.active:
        raise TransportError(
            "the subscription is paused", kind=FailureKind.PERMANENT, code="subscription_inactive"
        )
    try:
        secret = crypto.decrypt(subscription.encrypted_secret)
    except crypto.DecryptionError:
        raise TransportError(
            f"cannot decrypt the secret of subscription {subscription.pk}",
            kind=FailureKind.PERMANENT,
            code="secret",
        ) from None
    screening = subscription_url_screening(subscription.url)
    if screening.refused:
        raise TransportError(screening.refused, kind=FailureKind.PERMANENT, code="address_refused")
    if not screening.addresses:
        raise TransportError(
            "could not reach the subscriber (its host did not resolve)",
            kind=FailureKind.TRANSIENT,
            code="connection",
        )
    body = delivery_body(payload)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Event-Id": payload["event_id"],
        "X-Event-Type": payload["event_type"],
        "X-Signature-256": delivery_signature(secret, body),
    }
    try:
        # To an address just screened, never to a second DNS answer (which could be an internal one).
        response = pinned_post(
            subscription.url,
            list(screening.addresses),
            data=body,
            headers=headers,
            timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
            # A redirect would re-send the signed body somewhere the admin never configured.
            allow_redirects=False,
        )
    except requests.Timeout:
        raise TransportError("the subscriber timed out", kind=FailureKind.TRANSIENT, code="timeout") from None
    except requests.RequestException as exc:
        raise TransportError(
            f"could not reach the subscriber ({type(exc).__name__})",
            kind=FailureKind.TRANSIENT,
            code="connection",
        ) from None
    status = response.status_code
    if 200 <= status < 300:
        return SendResult(wa_message_id="", raw={"status": status})
    if status == 429:
        raise TransportError(
            "the subscriber asked us to slow down (429)",
            kind=FailureKind.RATE_LIMITED,
            code="http_429",
            retry_after=_retry_after(response),
        )
    if status >= 500:
        raise TransportError(
            f"the subscriber answered {status}", kind=FailureKind.TRANSIENT, code=f"http_{status}"
        )
    raise TransportError(
        f"the subscriber refused the event ({status})", kind=FailureKind.PERMANENT, code=f"http_{status}"
    )


def event_delivery_sender(row: OutboxMessage, context: Any = None) -> SendResult:
    """The outbox drain's sender for ``event_delivery`` rows (``outbox.dispatch.SENDERS``).

    A subscriber's 429 is that subscriber's business: the drain treats RATE_LIMITED as "pause this
    WhatsApp number", so here it becomes an ordinary retry with backoff instead.
    """
    try:
        return subscription_delivery_send(row)
    except TransportError as error:
        if error.kind == FailureKind.RATE_LIMITED:
            raise TransportError(
                error.message, kind=FailureKind.TRANSIENT, code=error.code, retry_after=error.retry_after
            ) from None
        raise
