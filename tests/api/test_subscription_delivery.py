"""A signed delivery reaches a real local HTTP receiver through the outbox, retried after a 500."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import ssl
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
    """A local HTTP endpoint answering with the given statuses in turn, recording each request.

    ``host``/``port`` choose where it listens (port 0: any free one); ``tls`` serves https with it.
    """

    def __init__(
        self,
        statuses: list[int],
        headers: dict[str, str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
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

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_address[1]
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.url = f"{'https' if tls else 'http'}://{host}:{self.port}/hook"
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
    monkeypatch.setattr("outbox.subscriptions.pinned_post", lambda *a, **kw: pytest.fail("called"))
    with pytest.raises(TransportError) as refused:
        subscription_delivery_send(row)
    assert refused.value.kind == FailureKind.PERMANENT and refused.value.code == "address_refused"
    assert issued.subscription.url == "https://crm.example.com/hook"


# ---------------------------------------------------------------- DNS rebinding
# 127.0.0.2 stands in for a public address: the screening is told to accept it, and a receiver listens
# there. 127.0.0.1, still refused, is the internal service a rebinding DNS answer points at.
VETTED = "127.0.0.2"
HOOK_NAME = "hooks.example.test"


@pytest.fixture
def screened(settings, monkeypatch):
    """Screening on, with VETTED counted as a public address."""
    from outbox import subscriptions

    settings.SUBSCRIPTIONS_ALLOW_PRIVATE_URLS = False
    judge = subscriptions._blocked_address
    monkeypatch.setattr(
        subscriptions, "_blocked_address", lambda address: address != VETTED and judge(address)
    )


def resolve_hook_name(monkeypatch, *answers: str | tuple[str, ...]) -> list[str | tuple[str, ...]]:
    """Make socket.getaddrinfo answer HOOK_NAME with ``answers`` in turn (the last one from then on), as
    a DNS server would; other hosts (addresses included) resolve as usual. Returns the lookups' log."""
    real = socket.getaddrinfo
    lookups: list[str | tuple[str, ...]] = []

    def getaddrinfo(host, port, *args, **kwargs):
        if host != HOOK_NAME:
            return real(host, port, *args, **kwargs)
        answer = answers[min(len(lookups), len(answers) - 1)]
        lookups.append(answer)
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))
            for address in ((answer,) if isinstance(answer, str) else answer)
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return lookups


def receivers_on_one_port(*hosts: str, tls: ssl.SSLContext | None = None) -> list[Receiver]:
    """One receiver per host, all on the same port (as one URL would reach any of them)."""
    for _ in range(20):
        first = Receiver([], host=hosts[0], tls=tls)
        try:
            return [first] + [Receiver([], host=host, port=first.port, tls=tls) for host in hosts[1:]]
        except OSError:  # that port is taken on another host: try another
            first.server.server_close()
    raise RuntimeError("no port free on all of " + ", ".join(hosts))


def test_a_name_that_rebinds_to_loopback_after_the_check_is_delivered_only_to_the_checked_address(
    team, screened, monkeypatch
):
    vetted, internal = receivers_on_one_port(VETTED, "127.0.0.1")
    with vetted, internal:
        row = _row(team, f"http://{HOOK_NAME}:{vetted.port}/hook")
        # The attacker's DNS: a public answer for the check, then the internal address for anyone asking again.
        resolve_hook_name(monkeypatch, VETTED, "127.0.0.1")
        subscription_delivery_send(row)
    assert internal.requests == []
    assert len(vetted.requests) == 1


def test_a_delivery_to_a_name_goes_to_its_one_looked_up_address_with_the_original_host_header(
    team, screened, monkeypatch
):
    with Receiver([200], host=VETTED) as receiver:
        issued = subscription_create(
            workspace=team.workspace_a,
            url=f"http://{HOOK_NAME}:{receiver.port}/hook",
            event_types=["chat.updated"],
        )
        [row] = subscription_events_emit(
            workspace=team.workspace_a, event_type="chat.updated", data={}, channel=team.channel_a
        )
        lookups = resolve_hook_name(monkeypatch, VETTED)
        subscription_delivery_send(row)
    assert lookups == [VETTED]  # resolved once, for the check; the connection used that answer
    [(headers, body)] = receiver.requests
    assert headers["host"] == f"{HOOK_NAME}:{receiver.port}"
    assert signature_is_valid(issued.secret, headers, body)


def test_when_a_name_s_first_address_refuses_the_connection_the_delivery_goes_to_its_next_one(
    team, monkeypatch
):
    with Receiver([200], host=VETTED) as receiver:
        row = _row(team, f"http://{HOOK_NAME}:{receiver.port}/hook")
        lookups = resolve_hook_name(monkeypatch, ("127.0.0.3", VETTED))  # nothing listens on .3
        subscription_delivery_send(row)
    assert len(lookups) == 1
    assert len(receiver.requests) == 1


# ---------------------------------------------------------------- https to a pinned address


def _certificate_authority(tmp_path):
    """A throwaway CA (its PEM file, for REQUESTS_CA_BUNDLE) and a function issuing server contexts."""
    from datetime import timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def pem_key(key) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def certificate(subject: str, key, issuer: str, issuer_key, *, ca: bool) -> x509.Certificate:
        now = timezone.now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False
            )
        return builder.sign(issuer_key, hashes.SHA256())

    ca_name, ca_key = "wa-inbox tests CA", ec.generate_private_key(ec.SECP256R1())
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(
        certificate(ca_name, ca_key, ca_name, ca_key, ca=True).public_bytes(serialization.Encoding.PEM)
    )

    def server_context(name: str) -> ssl.SSLContext:
        key = ec.generate_private_key(ec.SECP256R1())
        chain = tmp_path / f"{name}.pem"
        chain.write_bytes(
            pem_key(key)
            + certificate(name, key, ca_name, ca_key, ca=False).public_bytes(serialization.Encoding.PEM)
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(chain)
        return context

    return ca_file, server_context


@pytest.fixture
def trusted_ca(tmp_path, monkeypatch):
    """Issues server certificates that deliveries trust (through requests' REQUESTS_CA_BUNDLE)."""
    ca_file, server_context = _certificate_authority(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    return server_context


def test_an_https_delivery_to_a_pinned_address_checks_the_certificate_against_the_url_s_name(
    team, screened, monkeypatch, trusted_ca
):
    tls = trusted_ca(HOOK_NAME)  # no certificate for the address: it must be checked against the name
    server_names: list[str | None] = []
    tls.sni_callback = lambda sock, name, context: server_names.append(name)
    with Receiver([200], host=VETTED, tls=tls) as receiver:
        row = _row(team, f"https://{HOOK_NAME}:{receiver.port}/hook")
        resolve_hook_name(monkeypatch, VETTED)
        subscription_delivery_send(row)
    assert server_names == [HOOK_NAME]
    [(headers, _body)] = receiver.requests
    assert headers["host"] == f"{HOOK_NAME}:{receiver.port}"


def test_an_https_delivery_to_a_pinned_address_with_another_name_s_certificate_is_not_made(
    team, screened, monkeypatch, trusted_ca
):
    with Receiver([200], host=VETTED, tls=trusted_ca("elsewhere.example.test")) as receiver:
        row = _row(team, f"https://{HOOK_NAME}:{receiver.port}/hook")
        resolve_hook_name(monkeypatch, VETTED)
        with pytest.raises(TransportError) as caught:
            subscription_delivery_send(row)
    assert (caught.value.kind, caught.value.code) == (FailureKind.TRANSIENT, "connection")
    assert receiver.requests == []
