"""Provider webhook endpoints (Django): verify, store the raw event, answer 200; processing after commit.

The POST logic and its answers live in ``webhooks.ingest`` (shared with the lean ASGI front in
``webhooks.asgi``, which serves these POSTs in production); these views adapt a Django request to it and
answer Meta's GET verification handshake.
"""

from __future__ import annotations

from uuid import UUID

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from channels_app.models import Channel
from channels_app.providers.meta.signature import meta_verification_challenge
from channels_app.services import channel_token_read
from config.metrics import WEBHOOK_EVENTS
from webhooks.ingest import IncomingWebhook, WebhookAnswer, too_large, webhook_receive


def _read_body(request: HttpRequest) -> bytes | None:
    """The body, or None when it is over ``WEBHOOK_MAX_BODY_BYTES`` (declared or actual)."""
    limit = settings.WEBHOOK_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return None
    try:
        body = request.body
    except RequestDataTooBig:
        return None
    return body if len(body) <= limit else None


def _answer(answer: WebhookAnswer) -> HttpResponse:
    return JsonResponse(answer.payload, status=answer.status)


def _receive(request: HttpRequest, provider: str, channel_id: UUID | None) -> HttpResponse:
    body = _read_body(request)
    if body is None:
        return _answer(too_large(provider))
    incoming = IncomingWebhook(
        provider=provider,
        channel_id=channel_id,
        headers={name.lower(): value for name, value in request.headers.items()},
        body=body,
        remote_addr=request.META.get("REMOTE_ADDR", ""),
        request_id=getattr(request, "request_id", ""),
    )
    return _answer(webhook_receive(incoming))


@csrf_exempt
@require_POST
def whapi_webhook(request: HttpRequest, channel_id: UUID) -> HttpResponse:
    return _receive(request, Channel.Provider.WHAPI, channel_id)


@csrf_exempt
@require_POST
def sandbox_webhook(request: HttpRequest, channel_id: UUID) -> HttpResponse:
    return _receive(request, Channel.Provider.SANDBOX, channel_id)


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
    if request.method == "POST":
        return _receive(request, provider, channel_id)
    channel = Channel.objects.filter(pk=channel_id, provider=provider).first()
    if channel is None:
        WEBHOOK_EVENTS.labels(provider=provider, outcome="unknown_channel").inc()
        return JsonResponse({"error": "unknown channel"}, status=404)
    return _meta_verify(request, channel_token_read(channel=channel, token_type="verify_token") or "")


@csrf_exempt
@require_http_methods(["GET", "POST"])
def meta_app_webhook(request: HttpRequest) -> HttpResponse:
    """One Meta app serving many numbers: META_APP_SECRET / META_VERIFY_TOKEN, routed by phone_number_id."""
    if request.method == "POST":
        return _receive(request, Channel.Provider.META, None)
    return _meta_verify(request, settings.META_VERIFY_TOKEN)
