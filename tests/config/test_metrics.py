from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from config.metrics import SEND_ATTEMPTS
from outbox.models import OutboxMessage

pytestmark = pytest.mark.django_db


def test_metrics_are_refused_without_a_token_from_elsewhere(client: Client, settings) -> None:
    settings.METRICS_ALLOWED_IPS = []
    settings.METRICS_TOKEN = "scrape-token"
    assert client.get("/metrics", REMOTE_ADDR="10.0.0.9").status_code == 403
    assert (
        client.get("/metrics", REMOTE_ADDR="10.0.0.9", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    )
    ok = client.get("/metrics", REMOTE_ADDR="10.0.0.9", HTTP_AUTHORIZATION="Bearer scrape-token")
    assert ok.status_code == 200


def test_a_forwarded_request_needs_the_token_even_from_an_allowed_address(client: Client, settings) -> None:
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1"]
    settings.METRICS_TOKEN = "scrape-token"
    assert client.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 403
    assert client.get("/metrics").status_code == 200


def test_metrics_show_outbox_depth_channel_status_and_http_durations(team, client: Client) -> None:
    OutboxMessage.objects.create(
        channel=team.channel_a,
        chat=team.chat_a,
        message_type="text",
        payload={},
        next_attempt_at=timezone.now(),
    )
    SEND_ATTEMPTS.labels(provider="whapi", result="sent").inc()
    client.get("/healthz")
    text = client.get("/metrics").content.decode()
    assert f'wa_outbox_rows{{channel="{team.channel_a.pk}",status="queued"}} 1.0' in text
    assert "wa_outbox_oldest_queued_seconds" in text
    assert (
        f'wa_channel_status{{channel="{team.channel_a.pk}",provider="whapi",status="connected"}} 1.0' in text
    )
    assert 'wa_outbox_send_attempts_total{provider="whapi",result="sent"}' in text
    assert 'wa_http_request_seconds_count{method="GET",route="healthz",status="200"}' in text


def test_metrics_aggregate_several_processes_in_multiprocess_mode(
    team, client: Client, tmp_path, monkeypatch
) -> None:
    """Two worker processes write their counters to the shared directory; one scrape sums them."""
    import subprocess
    import sys

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    code = (
        "from prometheus_client import Counter; "
        "c = Counter('wa_outbox_send_attempts_total', 'x', ['provider', 'result']); "
        "c.labels(provider='meta', result='sent').inc(3)"
    )
    for _ in range(2):
        subprocess.run(
            [sys.executable, "-c", code], check=True, env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
        )
    text = client.get("/metrics").content.decode()
    assert 'wa_outbox_send_attempts_total{provider="meta",result="sent"} 6.0' in text


@pytest.mark.django_db(transaction=True)
def test_send_attempts_latency_and_rate_limit_pauses_are_counted(fake_provider) -> None:
    """One successful send and one 429 through the real outbox to the fake provider."""
    from prometheus_client import REGISTRY

    from outbox.services import outbox_drain
    from tests.outbox.helpers import open_chat, provider_channel, send_text

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    chat = open_chat(provider_channel(fake_provider))
    sent_before = value("wa_outbox_send_attempts_total", provider="whapi", result="sent")
    limited_before = value("wa_outbox_send_attempts_total", provider="whapi", result="rate_limited")
    pauses_before = value("wa_outbox_rate_limit_pauses_total", provider="whapi")
    latency_before = value("wa_outbox_send_seconds_count", provider="whapi")

    send_text(chat, "hello")
    outbox_drain()
    fake_provider.add_rule("rate_limit", retry_after=30, times=1)
    send_text(chat, "again")
    outbox_drain()

    assert value("wa_outbox_send_attempts_total", provider="whapi", result="sent") == sent_before + 1
    assert (
        value("wa_outbox_send_attempts_total", provider="whapi", result="rate_limited") == limited_before + 1
    )
    assert value("wa_outbox_rate_limit_pauses_total", provider="whapi") == pauses_before + 1
    assert value("wa_outbox_send_seconds_count", provider="whapi") == latency_before + 2


def test_webhook_requests_and_processing_are_counted_by_provider_outcome_and_type(team) -> None:
    from prometheus_client import REGISTRY

    from channels_app.services import channel_token_set
    from tests.webhooks.samples import fixture_bytes
    from webhooks.models import WebhookEvent
    from webhooks.processor import webhook_event_process

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    channel_token_set(channel=team.channel_a, token_type="webhook_secret", value="hook-secret", audit=False)
    received = value("wa_webhook_events_total", provider="whapi", outcome="received")
    rejected = value("wa_webhook_events_total", provider="whapi", outcome="bad_secret")
    lag_count = value("wa_webhook_processing_lag_seconds_count", provider="whapi")
    client = Client()
    url = f"/webhooks/whapi/{team.channel_a.pk}/"
    body = fixture_bytes("whapi", "whapi_incoming_text.json")
    assert (
        client.post(url, body, content_type="application/json", HTTP_AUTHORIZATION="Bearer nope").status_code
        == 401
    )
    assert (
        client.post(
            url, body, content_type="application/json", HTTP_AUTHORIZATION="Bearer hook-secret"
        ).status_code
        == 200
    )
    event = WebhookEvent.objects.get()
    webhook_event_process(event_id=event.pk)
    event.refresh_from_db()

    assert value("wa_webhook_events_total", provider="whapi", outcome="received") == received + 1
    assert value("wa_webhook_events_total", provider="whapi", outcome="bad_secret") == rejected + 1
    assert (
        value("wa_webhook_processed_total", provider="whapi", type=event.event_type, result="processed") >= 1
    )
    assert value("wa_webhook_processing_lag_seconds_count", provider="whapi") == lag_count + 1


@pytest.mark.django_db(transaction=True)
def test_open_websockets_are_gauged(team) -> None:
    from asgiref.sync import async_to_sync
    from channels.testing import WebsocketCommunicator
    from prometheus_client import REGISTRY

    from config.asgi import application

    browser = Client()
    browser.force_login(team.bob)
    cookie = f"sessionid={browser.cookies['sessionid'].value}".encode()
    before = REGISTRY.get_sample_value("wa_websocket_connections") or 0.0

    async def scenario() -> tuple[float | None, float | None]:
        socket = WebsocketCommunicator(
            application,
            "/ws/inbox/",
            headers=[(b"origin", b"http://testserver"), (b"host", b"testserver"), (b"cookie", cookie)],
        )
        connected, _ = await socket.connect(timeout=3)
        assert connected
        during = REGISTRY.get_sample_value("wa_websocket_connections")
        await socket.disconnect()
        return during, REGISTRY.get_sample_value("wa_websocket_connections")

    during, after = async_to_sync(scenario)()
    assert during == before + 1 and after == before
