"""Accepting a provider's POST: verify, store the raw event, answer. Framework-neutral, so the Django views
(``webhooks.views``) and the lean ASGI front (``webhooks.asgi``) give the same answers from one place.

Answers: 200 once the raw event is committed; 401 for a missing/wrong secret or signature (nothing
stored, logged and counted); 404 for an unknown channel; 400 for invalid JSON behind a valid signature
(kept as a failed event); 413 for a body over ``WEBHOOK_MAX_BODY_BYTES`` (the adapters read the body, so
they answer it with ``too_large``). A suspended workspace's events are stored and processed like any
other (its history is complete when it comes back).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import DatabaseError, connection, transaction

from channels_app import crypto
from channels_app.models import Channel
from channels_app.providers.base import WebhookParseError
from channels_app.providers.meta.parse import meta_event_type, meta_phone_number_ids
from channels_app.providers.meta.signature import SIGNATURE_HEADER, meta_signature_valid
from channels_app.providers.whapi.parse import whapi_body_channel_id, whapi_event_type
from channels_app.services import channel_token_read
from config.metrics import WEBHOOK_EVENTS
from config.request_context import correlation
from webhooks.models import WebhookEvent
from webhooks.services import EventToStore, webhook_events_store

logger = logging.getLogger(__name__)

META_SIGNATURE = SIGNATURE_HEADER.lower()


@dataclass(frozen=True)
class IncomingWebhook:
    """One POST as the adapters read it. ``headers`` has lower-case names."""

    provider: str
    channel_id: UUID | None  # None: Meta's one-app endpoint, routed by phone_number_id
    headers: Mapping[str, str]
    body: bytes
    remote_addr: str = ""
    request_id: str = ""


@dataclass(frozen=True)
class WebhookAnswer:
    status: int
    payload: dict[str, Any] = field(default_factory=dict)


# Not stored: the provider retries on anything but 2xx.
NOT_STORED = WebhookAnswer(500, {"error": "not stored, retry later"})


def too_large(provider: str) -> WebhookAnswer:
    WEBHOOK_EVENTS.labels(provider=provider, outcome="too_large").inc()
    return WebhookAnswer(413, {"error": "body too large"})


def webhook_receive(incoming: IncomingWebhook) -> WebhookAnswer:
    return webhook_receive_many([incoming])[0]


def webhook_receive_many(incomings: list[IncomingWebhook]) -> list[WebhookAnswer]:
    """Verify each POST, then store every verified one in one transaction; answers in the same order.

    Each POST's answer is what it would get alone (a bad signature next to good ones is still a 401 that
    stores nothing). If the shared commit fails, each is stored on its own, so one cannot fail the others.
    """
    lookups: dict[tuple[str, UUID, str], Channel | None] = {}
    answers: list[WebhookAnswer | None] = []
    verified: list[tuple[int, _Verified]] = []
    for index, incoming in enumerate(incomings):
        with correlation(incoming.request_id or None):  # its log lines carry its own request id
            try:
                outcome = _verify(incoming, lookups)
            except DatabaseError:
                raise  # the whole batch's connection: the caller stores it again on a fresh one, or answers 500
            except Exception:
                # Our bug, met by this POST alone: the POSTs stored with it must not fail with it.
                logger.exception("webhook could not be verified; answered 500 so the provider retries")
                outcome = NOT_STORED
        if isinstance(outcome, WebhookAnswer):
            answers.append(outcome)
        else:
            answers.append(None)
            verified.append((index, outcome))
    if verified:
        try:
            stored = _store_committed([item.to_store for _, item in verified])
        except Exception:
            if len(verified) == 1:
                raise
            logger.warning("storing %d webhooks together failed; storing each on its own", len(verified))
            stored = [_store_alone(item) for _, item in verified]
        for (index, item), events in zip(verified, stored, strict=True):
            answers[index] = item.answer(events)
    return [answer for answer in answers if answer is not None]


def _store_alone(item: _Verified) -> list[WebhookEvent]:
    return _store_committed([item.to_store])[0]


def _store_committed(items: list[EventToStore]) -> list[list[WebhookEvent]]:
    """Store ``items``; committed when this returns (200 means stored).

    On Postgres outside any transaction the store is one INSERT, which autocommit commits by itself: a
    BEGIN and a COMMIT round trip fewer per commit than inside ``atomic`` (at one POST per commit they were
    two of the ack's five round trips). Anywhere else ``atomic(durable=True)``, which refuses to run inside
    a caller's transaction, as before.
    """
    if connection.vendor == "postgresql" and connection.get_autocommit() and not connection.in_atomic_block:
        return webhook_events_store(items)
    with transaction.atomic(durable=True):
        return webhook_events_store(items)


@dataclass(frozen=True)
class _Verified:
    """A POST that passed verification: what to store, and how to answer once it is committed."""

    to_store: EventToStore
    invalid_reason: str = ""

    def answer(self, events: list[WebhookEvent]) -> WebhookAnswer:
        provider = self.to_store.provider
        if self.invalid_reason:
            WEBHOOK_EVENTS.labels(provider=provider, outcome="invalid_body").inc()
            return WebhookAnswer(400, {"error": self.invalid_reason})
        WEBHOOK_EVENTS.labels(provider=provider, outcome="received").inc(len(events))
        return WebhookAnswer(200, {"ok": True, "events": [event.pk for event in events]})


def _verify(
    incoming: IncomingWebhook, lookups: dict[tuple[str, UUID, str], Channel | None]
) -> _Verified | WebhookAnswer:
    if incoming.provider == Channel.Provider.META:
        if incoming.channel_id is None:
            return _meta_app(incoming)
        return _meta_channel(incoming, incoming.channel_id, lookups)
    assert incoming.channel_id is not None
    return _bearer(incoming, incoming.channel_id, lookups)


# ---------------------------------------------------------------- the three ways providers sign


def _bearer(
    incoming: IncomingWebhook, channel_id: UUID, lookups: dict[tuple[str, UUID, str], Channel | None]
) -> _Verified | WebhookAnswer:
    """Whapi (and the sandbox, which speaks Whapi's format): ``Authorization: Bearer <webhook secret>``."""
    provider = incoming.provider
    channel = _channel(channel_id, provider, "webhook_secret", lookups)
    if channel is None:
        return _not_found(provider)
    secret = _token(channel, "webhook_secret")
    presented = _bearer_token(incoming.headers)
    if not secret:
        return _unauthorized(incoming, "no_secret_configured", channel.pk)
    if not presented or not hmac.compare_digest(secret.encode("utf-8"), presented.encode("utf-8")):
        return _unauthorized(incoming, "bad_secret", channel.pk)
    payload = _json(incoming.body)
    if not isinstance(payload, dict):
        return _invalid_json(incoming, [channel])
    if channel.whapi_channel_id and whapi_body_channel_id(payload) != channel.whapi_channel_id:
        return _unauthorized(incoming, "channel_id_mismatch", channel.pk)
    return _store_verified(incoming, [channel], whapi_event_type(payload))


def _meta_channel(
    incoming: IncomingWebhook, channel_id: UUID, lookups: dict[tuple[str, UUID, str], Channel | None]
) -> _Verified | WebhookAnswer:
    """One Meta number with its own app secret (stored encrypted on the channel)."""
    provider = incoming.provider
    channel = _channel(channel_id, provider, "app_secret", lookups)
    if channel is None:
        return _not_found(provider)
    app_secret = _token(channel, "app_secret")
    if not app_secret:
        return _unauthorized(incoming, "no_secret_configured", channel.pk)
    if not meta_signature_valid(
        app_secret=app_secret, raw_body=incoming.body, header_value=incoming.headers.get(META_SIGNATURE)
    ):
        return _unauthorized(incoming, "bad_signature", channel.pk)
    payload = _json(incoming.body)
    if not isinstance(payload, dict):
        return _invalid_json(incoming, [channel])
    return _store_verified(incoming, [channel], meta_event_type(payload))


def _meta_app(incoming: IncomingWebhook) -> _Verified | WebhookAnswer:
    """One Meta app serving many numbers: META_APP_SECRET, routed by phone_number_id.

    A body naming several of our numbers is stored once per channel (each event processes only its
    number's changes); numbers we do not know are logged and skipped; none known → 404.
    """
    provider = incoming.provider
    if not settings.META_APP_SECRET:
        return _unauthorized(incoming, "no_secret_configured")
    if not meta_signature_valid(
        app_secret=settings.META_APP_SECRET,
        raw_body=incoming.body,
        header_value=incoming.headers.get(META_SIGNATURE),
    ):
        return _unauthorized(incoming, "bad_signature")
    payload = _json(incoming.body)
    if not isinstance(payload, dict):
        return _invalid_json(incoming, [None])
    try:
        phone_number_ids = meta_phone_number_ids(payload)
    except WebhookParseError:
        return _invalid_json(incoming, [None], reason="not a Meta webhook (no entry[])")
    channels = list(Channel.objects.filter(provider=provider, meta_phone_number_id__in=phone_number_ids))
    unknown = set(phone_number_ids) - {channel.meta_phone_number_id for channel in channels}
    if unknown:
        logger.warning("meta webhook for unknown phone_number_id(s): %s", ", ".join(sorted(unknown)))
    if phone_number_ids and not channels:
        return _not_found(provider)
    # Account-level changes name no number: stored (and marked unknown when processed).
    channels_or_none: list[Channel | None] = list(channels) if channels else [None]
    return _store_verified(incoming, channels_or_none, meta_event_type(payload))


# ---------------------------------------------------------------- shared steps


# Raw SQL: building this query through the ORM cost a third of the web process's time per webhook. The
# columns are in the model's field order (``Model.from_db`` fills the others in as deferred).
_CHANNEL_FIELDS = ("id", "workspace_id", "provider", "meta_phone_number_id", "whapi_channel_id")
_CHANNEL_SQL = """
SELECT c.id, c.workspace_id, c.provider, c.meta_phone_number_id, c.whapi_channel_id,
    (SELECT t.encrypted_value FROM channels_app_channeltoken t
     WHERE t.channel_id = c.id AND t.token_type = %s LIMIT 1) AS stored_token
FROM channels_app_channel c
WHERE c.id = %s AND c.provider = %s
"""


def _channel(
    channel_id: UUID, provider: str, token_type: str, lookups: dict[tuple[str, UUID, str], Channel | None]
) -> Channel | None:
    """The channel (the fields verification needs; others load on access), with ``stored_token`` (the
    encrypted ``token_type`` value) fetched in the same query; once per channel in a batch."""
    key = (provider, channel_id, token_type)
    if key not in lookups:
        pk = Channel._meta.pk.get_db_prep_value(channel_id, connection)  # type: ignore[union-attr]
        # A plain cursor: a RawQuerySet resolved its columns against the model on every call.
        with connection.cursor() as cursor:
            cursor.execute(_CHANNEL_SQL, [token_type, pk, provider])
            row = cursor.fetchone()
        channel = None
        if row is not None:
            channel = Channel.from_db(connection.alias, _CHANNEL_FIELDS, row[: len(_CHANNEL_FIELDS)])
            channel.stored_token = row[-1]  # type: ignore[attr-defined]
        lookups[key] = channel
    return lookups[key]


def _token(channel: Channel, token_type: str) -> str:
    """The plaintext secret fetched by ``_channel`` (one query on the hot path instead of two)."""
    stored = getattr(channel, "stored_token", None)
    if stored is None:
        return channel_token_read(channel=channel, token_type=token_type) or ""
    try:
        return crypto.decrypt(stored)
    except crypto.DecryptionError:
        logger.error("cannot decrypt the %s of channel %s", token_type, channel.pk)
        return ""


def _bearer_token(headers: Mapping[str, str]) -> str:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep to parse
        return None


def _store_verified(incoming: IncomingWebhook, channels: list[Channel | None], event_type: str) -> _Verified:
    """Verified: its raw event (one per channel it speaks for) is stored, then it is answered 200."""
    return _Verified(_to_store(incoming, channels, event_type))


def _invalid_json(
    incoming: IncomingWebhook, channels: list[Channel | None], *, reason: str = "invalid JSON"
) -> _Verified:
    """Verified but unreadable: kept as a failed event for inspection (never processed), answered 400."""
    to_store = _to_store(
        incoming, channels, "invalid", failed_reason=f"{reason}: kept for inspection, not processed"
    )
    return _Verified(to_store, invalid_reason=reason)


def _to_store(
    incoming: IncomingWebhook, channels: list[Channel | None], event_type: str, *, failed_reason: str = ""
) -> EventToStore:
    return EventToStore(
        provider=incoming.provider,
        channels=channels,
        raw_body=incoming.body,
        headers=incoming.headers,
        signature_valid=True,
        event_type=event_type,
        failed_reason=failed_reason,
        correlation_id=incoming.request_id,
    )


def _unauthorized(incoming: IncomingWebhook, reason: str, channel_id: Any = None) -> WebhookAnswer:
    # Never log what was presented: a near-miss secret is still a secret.
    WEBHOOK_EVENTS.labels(provider=incoming.provider, outcome=reason).inc()
    logger.warning(
        "webhook rejected: provider=%s channel=%s reason=%s remote=%s",
        incoming.provider,
        channel_id,
        reason,
        incoming.remote_addr,
    )
    return WebhookAnswer(401, {"error": "unauthorized"})


def _not_found(provider: str) -> WebhookAnswer:
    WEBHOOK_EVENTS.labels(provider=provider, outcome="unknown_channel").inc()
    return WebhookAnswer(404, {"error": "unknown channel"})
