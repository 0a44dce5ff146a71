from __future__ import annotations

import json
import logging

import pytest
from django.test import Client

from config.json_logging import JsonFormatter
from config.request_context import correlation


def test_a_request_id_is_generated_and_echoed(client: Client) -> None:
    response = client.get("/healthz")
    assert len(response["X-Request-ID"]) == 32


def test_an_incoming_request_id_is_kept(client: Client) -> None:
    response = client.get("/healthz", HTTP_X_REQUEST_ID="lb-1234-abcd")
    assert response["X-Request-ID"] == "lb-1234-abcd"


def test_a_hostile_request_id_is_replaced(client: Client) -> None:
    response = client.get("/healthz", HTTP_X_REQUEST_ID="x" * 500 + "\n{injected}")
    assert response["X-Request-ID"] != "x" * 500 and len(response["X-Request-ID"]) == 32


def test_log_lines_are_json_with_request_and_workspace_ids() -> None:
    record = logging.makeLogRecord({"name": "inbox", "levelname": "INFO", "msg": "sent %s", "args": ("m1",)})
    record.channel_id = "c-1"
    with correlation("req-42", workspace_id="ws-7"):
        line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert entry["event"] == "sent m1"
    assert entry["request_id"] == "req-42" and entry["workspace_id"] == "ws-7"
    assert entry["channel_id"] == "c-1"
    assert "\n" not in line


def test_celery_tasks_inherit_the_correlation_id() -> None:
    from config.celery import _attach_correlation_id

    headers: dict = {}
    with correlation("req-99"):
        _attach_correlation_id(headers=headers)
    assert headers == {"correlation_id": "req-99"}


@pytest.mark.django_db
def test_every_page_carries_a_content_security_policy_without_inline_script(client: Client) -> None:
    policy = client.get("/accounts/login/")["Content-Security-Policy"]
    script_src = next(part for part in policy.split("; ") if part.startswith("script-src"))
    assert script_src == "script-src 'self'"
    assert "frame-ancestors 'none'" in policy


@pytest.mark.django_db
def test_a_webhooks_request_id_becomes_its_events_correlation_id_and_tags_processing_logs(
    team, caplog
) -> None:
    from channels_app.services import channel_token_set
    from tests.webhooks.samples import fixture_bytes
    from webhooks.models import WebhookEvent
    from webhooks.processor import webhook_event_process

    channel_token_set(channel=team.channel_a, token_type="webhook_secret", value="hook-secret", audit=False)
    response = Client().post(
        f"/webhooks/whapi/{team.channel_a.pk}/",
        fixture_bytes("whapi", "whapi_incoming_text.json"),
        content_type="application/json",
        HTTP_AUTHORIZATION="Bearer hook-secret",
        HTTP_X_REQUEST_ID="prov-req-77",
    )
    assert response["X-Request-ID"] == "prov-req-77"
    event = WebhookEvent.objects.get()
    assert event.correlation_id == "prov-req-77"

    seen: list[tuple[str, str]] = []

    class Spy(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            from config.request_context import request_id_var, workspace_id_var

            seen.append((request_id_var.get(), workspace_id_var.get()))

    spy = Spy(level=logging.DEBUG)
    logging.getLogger("webhooks").addHandler(spy)
    logging.getLogger("webhooks").setLevel(logging.DEBUG)
    try:
        webhook_event_process(event_id=event.pk)
    finally:
        logging.getLogger("webhooks").removeHandler(spy)
    assert seen and all(ids == ("prov-req-77", str(team.workspace_a.pk)) for ids in seen)
