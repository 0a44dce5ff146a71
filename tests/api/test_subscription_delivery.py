"""A signed delivery reaches a real local HTTP receiver through the outbox, retried after a 500."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from channels_app.providers.base import FailureKind, TransportError
from outbox.models import OutboxMessage
from outbox.services import outbox_drain
from outbox.subscriptions import (
    EVENT_DELIVERY,
    event_delivery_sender,
    subscription_create,
    subscription_delivery_send,
    subscription_events_emit,
)
from tests.api.conftest import data_of

pytestmark = pytest.mark.django_db


class Receiver:
    """A local HTTP endpoint answering with the given statuses in turn, recording each request."""

    def __init__(self, statuses: list[int], headers: dict[str, str] | None = None) -> None:
        self.statuses = list(statuses)
        self.extra_headers = headers or {}
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                for name, value in receiver.extra_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def signature_is_valid(secret: str, headers: dict[str, str], body: bytes) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["x-signature-256"], expected)


@pytest.fixture(autouse=True)
def _no_background_drainer(settings):
    settings.OUTBOX_AUTO_DRAIN = False  # the test drives the drain itself


def test_a_delivery_that_fails_with_500_is_retried_and_arrives_signed_with_the_same_event_id(alice_api, team):
    with Receiver([500, 200]) as receiver:
        issued = subscription_create(
            workspace=team.workspace_a, url=receiver.url, event_types=["chat.updated"]
        )
        data_of(alice_api.patch(f"/chats/{team.chat_a.pk}/", {"status": "pending"}))
        row = OutboxMessage.objects.get(message_type=EVENT_DELIVERY)

        now = timezone.now()
        outbox_drain(now=now)
        row.refresh_from_db()
        assert row.status == OutboxMessage.Status.QUEUED
        assert row.last_error_code == "http_500"
        assert row.next_attempt_at > now
        assert len(receiver.requests) == 1

        outbox_drain(now=row.next_attempt_at)  # the retry is due
        row.refresh_from_db()
        assert row.status == OutboxMessage.Status.SENT
        assert len(receiver.requests) == 2

    (first_headers, first_body), (headers, body) = receiver.requests
    assert body == first_body
    assert headers["x-event-id"] == first_headers["x-event-id"] == row.payload["event_id"]
    assert headers["x-event-type"] == "chat.updated"
    assert signature_is_valid(issued.secret, headers, body)
    event = json.loads(body)
    assert event["id"] == row.payload["event_id"]
    assert event["type"] == "chat.updated"
    assert event["data"]["chat"]["id"] == team.chat_a.pk
    assert event["data"]["chat"]["status"] == "pending"


def test_a_rotated_secret_signs_the_deliveries_still_queued(alice_api, team):
    with Receiver([200]) as receiver:
        issued = subscription_create(
            workspace=team.workspace_a, url=receiver.url, event_types=["chat.updated"]
        )
        subscription_events_emit(
            workspace=team.workspace_a, event_type="chat.updated", data={}, channel=team.channel_a
        )
        rotated = data_of(alice_api.post(f"/subscriptions/{issued.subscription.pk}/rotate-secret/"))["secret"]
        outbox_drain(now=timezone.now())
    [(headers, body)] = receiver.requests
    assert signature_is_valid(rotated, headers, body)
    assert not signature_is_valid(issued.secret, headers, body)


def _row(team, url):
    subscription_create(workspace=team.workspace_a, url=url, event_types=["chat.updated"])
    [row] = subscription_events_emit(
        workspace=team.workspace_a, event_type="chat.updated", data={}, channel=team.channel_a
    )
    return row


def test_a_4xx_is_a_permanent_failure(team):
    with Receiver([410]) as receiver:
        row = _row(team, receiver.url)
        with pytest.raises(TransportError) as caught:
            subscription_delivery_send(row)
    assert caught.value.kind == FailureKind.PERMANENT


def test_a_429_is_rate_limited_with_its_retry_after_but_never_pauses_the_number(team):
    with Receiver([429, 429], headers={"Retry-After": "30"}) as receiver:
        row = _row(team, receiver.url)
        with pytest.raises(TransportError) as caught:
            subscription_delivery_send(row)
        assert caught.value.kind == FailureKind.RATE_LIMITED
        assert caught.value.retry_after == 30
        # What the drain sees: an ordinary retry, so the WhatsApp number keeps sending.
        with pytest.raises(TransportError) as seen_by_drain:
            event_delivery_sender(row)
    assert seen_by_drain.value.kind == FailureKind.TRANSIENT


def test_an_unreachable_subscriber_is_a_transient_failure(team):
    with Receiver([]) as receiver:
        url = receiver.url
    row = _row(team, url)  # the receiver is gone: connection refused
    with pytest.raises(TransportError) as caught:
        subscription_delivery_send(row)
    assert caught.value.kind == FailureKind.TRANSIENT


def test_a_delivery_for_a_deleted_subscription_fails_for_good(team):
    row = _row(team, "http://127.0.0.1:9/never")
    from outbox.models import EventSubscription

    EventSubscription.objects.all().delete()
    outbox_drain(now=timezone.now())
    row.refresh_from_db()
    assert row.status == OutboxMessage.Status.FAILED
    assert row.last_error_code == "subscription_gone"


def test_a_name_that_resolves_to_a_private_address_is_not_called(team, settings, monkeypatch):
    issued = subscription_create(
        workspace=team.workspace_a, url="https://crm.example.com/hook", event_types=["message.created"]
    )
    (row,) = subscription_events_emit(
        workspace=team.workspace_a, event_type="message.created", data={"id": 1}, channel=team.channel_a
    )
    settings.SUBSCRIPTIONS_ALLOW_PRIVATE_URLS = False
    # The DNS answer is the outside world: it now points the name inside our network.
    monkeypatch.setattr(
        "outbox.subscriptions.socket.getaddrinfo",
        lambda host, port, **kw: [(2, 1, 6, "", ("10.0.0.5", port))],
    )
    monkeypatch.setattr("outbox.subscriptions.requests.post", lambda *a, **kw: pytest.fail("called"))
    with pytest.raises(TransportError) as refused:
        subscription_delivery_send(row)
    assert refused.value.kind == FailureKind.PERMANENT and refused.value.code == "address_refused"
    assert issued.subscription.url == "https://crm.example.com/hook"
