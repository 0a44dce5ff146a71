"""Provider webhook endpoints: verify, store the raw event, answer 200. Processing happens after commit.

Answers: 200 once the raw event is committed; 401 for a missing/wrong secret or signature (nothing
stored, logged and counted); 404 for an unknown channel; 400 for invalid JSON behind a valid signature
(kept as a failed event); 413 for a body over ``WEBHOOK_MAX_BODY_BYTES``. A suspended workspace's
events are stored and processed like any other (its history is complete when it comes back).
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from channels_app import crypto
from channels_app.models import Channel, ChannelToken
from channels_app.providers.base import WebhookParseError
from channels_app.providers.meta.parse import meta_event_type, meta_phone_number_ids
from channels_app.providers.meta.signature import (
    SIGNATURE_HEADER,
    meta_signature_valid,
    meta_verification_challenge,
)
from channels_app.providers.whapi.parse import whapi_body_channel_id, whapi_event_type
from channels_app.services import channel_token_read
from config.metrics import WEBHOOK_EVENTS
from webhooks.models import WebhookEvent
from webhooks.services import webhook_event_store

logger = logging.getLogger(__name__)


class _BodyTooLarge(Exception):
    pass


def _read_body(request: HttpRequest) -> bytes:
    limit = settings.WEBHOOK_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise _BodyTooLarge
    try:
        body = request.body
    except RequestDataTooBig:
        raise _BodyTooLarge from None
    if len(body) > limit:
        raise _BodyTooLarge
    return body


def _too_large(provider: str) -> HttpResponse:
    WEBHOOK_EVENTS.labels(provider=provider, outcome="too_large").inc()
    return JsonResponse({"error": "body too large"}, status=413)


def _unauthorized(request: HttpRequest, provider: str, reason: str, channel_id: Any = None) -> HttpResponse:
    # Never log what was presented: a near-miss secret is still a secret.
    WEBHOOK_EVENTS.labels(provider=provider, outcome=reason).inc()
    logger.warning(
        "webhook rejected: provider=%s channel=%s reason=%s remote=%s",
        provider,
        channel_id,
        reason,
        request.META.get("REMOTE_ADDR", ""),
    )
    return JsonResponse({"error": "unauthorized"}, status=401)


def _not_found(provider: str) -> HttpResponse:
    WEBHOOK_EVENTS.labels(provider=provider, outcome="unknown_channel").inc()
    return JsonResponse({"error": "unknown channel"}, status=404)


def _channel(channel_id: UUID, provider: str, *, token_type: str = "") -> Channel | None:
    """The channel, with ``stored_token`` (the encrypted ``token_type`` value) fetched in the same query."""
    qs = Channel.objects.filter(pk=channel_id, provider=provider)
    if token_type:
        qs = qs.annotate(
            stored_token=Subquery(
                ChannelToken.objects.filter(channel=OuterRef("pk"), token_type=token_type).values(
                    "encrypted_value"
                )[:1]
            )
        )
    return qs.first()


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


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _bearer(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _store_verified(
    request: HttpRequest, provider: str, channels: list[Channel | None], body: bytes, event_type: str
) -> HttpResponse:
    """Commit the verified raw event (one per channel it speaks for), then answer 200."""
    with transaction.atomic(durable=True):
        events = webhook_event_store(
            provider=provider,
            channels=channels,
            raw_body=body,
            headers=request.headers,
            signature_valid=True,
            event_type=event_type,
        )
    return _accepted(provider, events)


def _accepted(provider: str, events: list[WebhookEvent]) -> HttpResponse:
    WEBHOOK_EVENTS.labels(provider=provider, outcome="received").inc(len(events))
    return JsonResponse({"ok": True, "events": [event.pk for event in events]})


def _invalid_json(
    provider: str,
    channels: list[Channel | None],
    body: bytes,
    request: HttpRequest,
    *,
    reason: str = "invalid JSON",
) -> HttpResponse:
    with transaction.atomic(durable=True):
        webhook_event_store(
            provider=provider,
            channels=channels,
            raw_body=body,
            headers=request.headers,
            signature_valid=True,
            event_type="invalid",
            failed_reason=f"{reason}: kept for inspection, not processed",
        )
    WEBHOOK_EVENTS.labels(provider=provider, outcome="invalid_body").inc()
    return JsonResponse({"error": reason}, status=400)


def _bearer_webhook(request: HttpRequest, channel_id: UUID, provider: str) -> HttpResponse:
    """Whapi (and the sandbox, which speaks Whapi's format): ``Authorization: Bearer <webhook secret>``."""
    try:
        body = _read_body(request)
    except _BodyTooLarge:
        return _too_large(provider)
    channel = _channel(channel_id, provider, token_type="webhook_secret")
    if channel is None:
        return _not_found(provider)
    secret = _token(channel, "webhook_secret")
    presented = _bearer(request)
    if not secret:
        return _unauthorized(request, provider, "no_secret_configured", channel.pk)
    if not presented or not hmac.compare_digest(secret.encode("utf-8"), presented.encode("utf-8")):
        return _unauthorized(request, provider, "bad_secret", channel.pk)
    payload = _json(body)
    if not isinstance(payload, dict):
        return _invalid_json(provider, [channel], body, request)
    body_channel_id = whapi_body_channel_id(payload)
    if channel.whapi_channel_id and body_channel_id != channel.whapi_channel_id:
        return _unauthorized(request, provider, "channel_id_mismatch", channel.pk)
    return _store_verified(request, provider, [channel], body, whapi_event_type(payload))


@csrf_exempt
@require_POST
def whapi_webhook(request: HttpRequest, channel_id: UUID) -> HttpResponse:
    return _bearer_webhook(request, channel_id, Channel.Provider.WHAPI)


@csrf_exempt
@require_POST
def sandbox_webhook(request: HttpRequest, channel_id: UUID) -> HttpResponse:
    return _bearer_webhook(request, channel_id, Channel.Provider.SANDBOX)


def _meta_verify(request: HttpRequest, expected_verify_token: str) -> HttpResponse:
    challenge = meta_verification_challenge(
        expected_verify_token=expected_verify_token,
        mode=request.GET.get("hub.mode"),
        verify_token=request.GET.get("hub.verify_token"),
        challenge=request.GET.get("hub.challenge"),
    )
    if challenge is None:
        WEBHOOK_EVENTS.labels(provider="meta", outcome="bad_verify_token").inc()
        return HttpResponse("forbidden", status=403, content_type="text/plain")
    return HttpResponse(challenge, content_type="text/plain")


@csrf_exempt
@require_http_methods(["GET", "POST"])
def meta_channel_webhook(request: HttpRequest, channel_id: UUID) -> HttpResponse:
    """One Meta number with its own app secret and verify token (stored encrypted on the channel)."""
    provider = Channel.Provider.META
    if request.method == "GET":
        channel = _channel(channel_id, provider)
        if channel is None:
            return _not_found(provider)
        return _meta_verify(request, channel_token_read(channel=channel, token_type="verify_token") or "")
    try:
        body = _read_body(request)
    except _BodyTooLarge:
        return _too_large(provider)
    channel = _channel(channel_id, provider, token_type="app_secret")
    if channel is None:
        return _not_found(provider)
    app_secret = _token(channel, "app_secret")
    if not app_secret:
        return _unauthorized(request, provider, "no_secret_configured", channel.pk)
    if not meta_signature_valid(
        app_secret=app_secret, raw_body=body, header_value=request.headers.get(SIGNATURE_HEADER)
    ):
        return _unauthorized(request, provider, "bad_signature", channel.pk)
    payload = _json(body)
    if not isinstance(payload, dict):
        return _invalid_json(provider, [channel], body, request)
    return _store_verified(request, provider, [channel], body, meta_event_type(payload))


@csrf_exempt
@require_http_methods(["GET", "POST"])
def meta_app_webhook(request: HttpRequest) -> HttpResponse:
    """One Meta app serving many numbers: META_APP_SECRET / META_VERIFY_TOKEN, routed by phone_number_id.

    A body naming several of our numbers is stored once per channel (each event processes only its
    number's changes); numbers we do not know are logged and skipped; none known → 404.
    """
    provider = Channel.Provider.META
    if request.method == "GET":
        return _meta_verify(request, settings.META_VERIFY_TOKEN)
    try:
        body = _read_body(request)
    except _BodyTooLarge:
        return _too_large(provider)
    if not settings.META_APP_SECRET:
        return _unauthorized(request, provider, "no_secret_configured")
    if not meta_signature_valid(
        app_secret=settings.META_APP_SECRET, raw_body=body, header_value=request.headers.get(SIGNATURE_HEADER)
    ):
        return _unauthorized(request, provider, "bad_signature")
    payload = _json(body)
    if not isinstance(payload, dict):
        return _invalid_json(provider, [None], body, request)
    try:
        phone_number_ids = meta_phone_number_ids(payload)
    except WebhookParseError:
        return _invalid_json(provider, [None], body, request, reason="not a Meta webhook (no entry[])")
    channels = list(Channel.objects.filter(provider=provider, meta_phone_number_id__in=phone_number_ids))
    unknown = set(phone_number_ids) - {channel.meta_phone_number_id for channel in channels}
    if unknown:
        logger.warning("meta webhook for unknown phone_number_id(s): %s", ", ".join(sorted(unknown)))
    if phone_number_ids and not channels:
        return _not_found(provider)
    if not channels:
        # Account-level changes name no number: stored (and marked unknown when processed).
        channels_or_none: list[Channel | None] = [None]
    else:
        channels_or_none = list(channels)
    return _store_verified(request, provider, channels_or_none, body, meta_event_type(payload))
