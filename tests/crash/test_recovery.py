"""Crash tests (not timed): a worker killed mid-processing, database connections terminated mid-drain and
mid-processing, Redis gone while webhooks arrive. Each asserts nothing is lost and nothing is sent twice
beyond what the outbox's contract allows (a send whose result could not be recorded goes again, with the
same message).

A worker killed with SIGKILL mid-send is tests/outbox/test_concurrency.py
``test_a_worker_killed_mid_send_has_its_row_recovered_after_the_lease`` (not repeated here).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from django.db import connection
from django.utils import timezone

from inbox.models import Message
from outbox.models import OutboxMessage
from outbox.services import lease_seconds, outbox_drain
from tests.factories import ChannelFactory
from tests.outbox.helpers import open_chat, provider_channel, send_text
from webhooks import processor
from webhooks.models import WebhookEvent

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.crash, pytest.mark.django_db(transaction=True)]


def wait_for(condition: Any, *, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def database_url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


def inbound_body(wa_id: str, text: str = "hello") -> bytes:
    return json.dumps(
        {
            "messages": [
                {"id": wa_id, "from_me": False, "type": "text", "chat_id": "491700000777@s.whatsapp.net",
                 "timestamp": 1713000000, "text": {"body": text}, "from": "491700000777", "from_name": "Crash"}
            ],
            "event": {"type": "messages", "event": "post"},
        }
    ).encode()  # fmt: skip


def stored_event(channel: Any, wa_id: str) -> WebhookEvent:
    # Created directly: the endpoint's after-commit kick would process it at once in eager mode.
    return WebhookEvent.objects.create(
        provider="whapi", channel=channel, raw_body=inbound_body(wa_id), signature_valid=True
    )


def process_due_after(seconds: float) -> list[str]:
    """What beat's sweep task does, ``seconds`` from now: recover expired leases, process what is due."""
    _recovered, due = processor.webhook_events_sweep(now=timezone.now() + timedelta(seconds=seconds))
    return [processor.webhook_event_process(event_id=event_id).status for event_id in due]


def terminate_other_backends() -> int:
    """pg_terminate_backend on every other connection to this test's own database (xdist: one per worker)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return int(cursor.fetchone()[0])


SLOW_WORKER = """
import sys, time
import django
django.setup()
from webhooks import processor
real_apply = processor.inbound_events_apply
def slow_apply(**kwargs):
    result = real_apply(**kwargs)
    print("applying", flush=True)
    time.sleep(60)  # the injected slow step, inside the event's transaction: killed here
    return result
processor.inbound_events_apply = slow_apply
processor.webhook_event_process(event_id=int(sys.argv[1]))
"""


def test_a_webhook_worker_killed_mid_processing_is_recovered_by_the_sweep_and_the_message_exists_once():
    channel = ChannelFactory(provider="whapi")
    event = stored_event(channel, "crash-kill-0001")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": database_url()}
    worker = subprocess.Popen(
        [sys.executable, "-c", SLOW_WORKER, str(event.pk)], cwd=ROOT, env=env, stdout=subprocess.PIPE
    )
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == b"applying", "the worker reached the slow step"
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.PROCESSING, "claimed, then the worker died"
    assert not Message.objects.filter(wa_message_id="crash-kill-0001").exists(), (
        "its transaction died with it"
    )

    assert process_due_after(1) == [], "a live lease is left alone"
    assert process_due_after(processor.LEASE.total_seconds() + 1) == ["processed"]

    event.refresh_from_db()
    assert (event.status, event.attempts) == (WebhookEvent.Status.PROCESSED, 2)
    assert Message.objects.filter(channel=channel, wa_message_id="crash-kill-0001").count() == 1


def test_terminated_connections_mid_drain_lose_nothing_and_resend_only_the_unrecorded_send(fake_provider):
    channel = provider_channel(fake_provider)
    message = send_text(open_chat(channel), "through a dropped connection")
    fake_provider.add_rule("hold")  # the provider keeps the send open while we cut the connection
    errors: list[BaseException] = []

    def drain() -> None:
        try:
            outbox_drain()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=drain)
    thread.start()
    wait_for(lambda: len(fake_provider.sends()) == 1, what="the send to reach the provider")
    assert terminate_other_backends() >= 1
    fake_provider.release_held()
    thread.join(timeout=20)
    assert errors, "recording on a terminated connection fails (and is not hidden)"

    row = OutboxMessage.objects.get(message=message)
    assert row.status == OutboxMessage.Status.SENDING, "the result was never recorded"
    fake_provider.reset()  # no more holds
    report = outbox_drain(now=timezone.now() + timedelta(seconds=lease_seconds() + 1))
    assert (report.released_leases, report.sent) == (1, 1)

    row.refresh_from_db()
    message.refresh_from_db()
    assert row.status == OutboxMessage.Status.SENT
    assert message.status == Message.Status.SENT
    assert Message.objects.filter(client_message_id=message.client_message_id).count() == 1
    # The one allowed duplicate: the first call's answer was lost with the connection; the resend is the
    # same message.
    [resend] = fake_provider.sends()
    assert resend.json["body"] == "through a dropped connection"
    assert message.wa_message_id == resend.message_id


def test_terminated_connections_mid_processing_are_recovered_and_the_message_exists_once(monkeypatch):
    channel = ChannelFactory(provider="whapi")
    event = stored_event(channel, "crash-term-0001")
    inside, go_on = threading.Event(), threading.Event()
    real_apply = processor.inbound_events_apply

    def held_apply(**kwargs: Any) -> Any:
        result = real_apply(**kwargs)
        inside.set()
        go_on.wait(20)
        return result

    monkeypatch.setattr(processor, "inbound_events_apply", held_apply)
    errors: list[BaseException] = []

    def process() -> None:
        try:
            processor.webhook_event_process(event_id=event.pk)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=process)
    thread.start()
    assert inside.wait(20)
    assert terminate_other_backends() >= 1
    go_on.set()
    thread.join(timeout=20)
    monkeypatch.setattr(processor, "inbound_events_apply", real_apply)
    assert not errors, errors  # the processor handles its own connection's death
    event.refresh_from_db()
    # Claimed before the connection died; what follows depends on where the cut fell: recorded as a
    # failure to retry (it reconnected for that), or left processing until its lease ends.
    assert event.status in (WebhookEvent.Status.FAILED, WebhookEvent.Status.PROCESSING)
    assert not Message.objects.filter(wa_message_id="crash-term-0001").exists(), "rolled back with it"

    # Time passes: its first retry delay (1 minute) if it was recorded as failed, its lease if not.
    WebhookEvent.objects.filter(pk=event.pk, status=WebhookEvent.Status.FAILED).update(
        next_attempt_at=timezone.now()
    )
    assert process_due_after(processor.LEASE.total_seconds() + 1) == ["processed"]
    assert Message.objects.filter(channel=channel, wa_message_id="crash-term-0001").count() == 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for(lambda: _answers(port), what="the private redis-server")
    return redis


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def test_webhooks_arriving_while_redis_is_down_are_stored_acknowledged_and_processed_when_it_returns(
    tmp_path: Path,
):
    from channels_app.services import channel_token_set

    channel = ChannelFactory(provider="whapi")
    channel_token_set(channel=channel, token_type="webhook_secret", value="crash-secret", audit=False)
    redis_port, web_port = _free_port(), _free_port()
    redis = _start_redis(redis_port, tmp_path)  # private: the shared Redis on 6379 is never touched
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url(),
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "SECRET_KEY": "crash-test-secret-key-" + "x" * 30,
        "ENCRYPTION_KEY": os.environ.get("ENCRYPTION_KEY", "test-encryption-key"),
        "DEBUG": "false",
        "HTTPS": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "ERROR",
    }
    web = subprocess.Popen(
        [str(Path(sys.executable).parent / "uvicorn"), "config.asgi:application", "--host", "127.0.0.1",
         "--port", str(web_port), "--lifespan", "off", "--log-level", "error"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: _answers(web_port), timeout=30, what="uvicorn")
        redis.terminate()  # Redis goes away while webhooks keep coming
        redis.wait(timeout=10)
        answers = [
            requests.post(
                f"http://127.0.0.1:{web_port}/webhooks/whapi/{channel.pk}/",
                data=inbound_body(f"crash-redis-{n}", f"while redis was down {n}"),
                headers={"Authorization": "Bearer crash-secret", "Content-Type": "application/json"},
                timeout=30,
            ).status_code
            for n in range(3)
        ]
        assert answers == [200, 200, 200], "stored and acknowledged; the failed kick is soft"
        events = WebhookEvent.objects.filter(channel=channel)
        assert events.count() == 3
        assert set(events.values_list("status", flat=True)) == {WebhookEvent.Status.PENDING}

        redis = _start_redis(redis_port, tmp_path)  # Redis is back: beat's sweep catches up
        outcomes = process_due_after(processor.PENDING_GRACE.total_seconds() + 1)
    finally:
        web.terminate()
        web.wait(timeout=10)
        redis.terminate()
        redis.wait(timeout=10)
    assert outcomes == ["processed"] * 3
    for n in range(3):
        assert Message.objects.filter(channel=channel, wa_message_id=f"crash-redis-{n}").count() == 1
