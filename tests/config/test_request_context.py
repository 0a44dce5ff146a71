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
