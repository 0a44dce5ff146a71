"""Concurrent drains, a worker killed mid-send, and the echo that beats the send response.

These commit for real (``transaction=True``): each drain runs in its own thread or process with its own
database connection, as Celery workers do.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from channels_app.providers.base import InboundMessage, StatusUpdate
from inbox.models import Message
from outbox.models import OutboxMessage
from outbox.services import lease_seconds, outbox_drain, outbox_release_expired_leases
from tests.outbox.helpers import bodies, open_chat, provider_channel, send_text
from tests.threads import run_together

ROOT = Path(__file__).resolve().parents[2]


def wait_for(condition, *, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


@pytest.mark.django_db(transaction=True)
def test_three_concurrent_drains_send_each_of_500_rows_exactly_once_in_chat_order(fake_provider):
    channels = [provider_channel(fake_provider), provider_channel(fake_provider, provider="meta")]
    chats = [open_chat(channels[i % 2]) for i in range(25)]
    expected_order: dict[int, list[str]] = defaultdict(list)
    for n in range(500):
        chat = chats[n % len(chats)]
        text = f"row {n:03d}"
        send_text(chat, text)
        expected_order[chat.pk].append(text)
    assert OutboxMessage.objects.filter(status=OutboxMessage.Status.QUEUED).count() == 500

    def drain() -> None:
        while OutboxMessage.objects.filter(status=OutboxMessage.Status.QUEUED).exists():
            outbox_drain(batch_size=10, max_batches=5)

    run_together(drain, 3)

    received = bodies(fake_provider)
    assert len(received) == 500
    assert Counter(received).most_common(1)[0][1] == 1, "no row went twice"
    assert set(received) == {f"row {n:03d}" for n in range(500)}
    assert OutboxMessage.objects.filter(status=OutboxMessage.Status.SENT).count() == 500
    by_body = {r: i for i, r in enumerate(received)}
    for chat_id, texts in expected_order.items():
        assert sorted(texts, key=by_body.__getitem__) == texts, f"chat {chat_id} out of order"
    ids_sent = {request.message_id for request in fake_provider.sends()}
    assert set(Message.objects.filter(direction="out").values_list("wa_message_id", flat=True)) == ids_sent


DRAIN_SCRIPT = """
import django
django.setup()
from outbox.services import outbox_drain
outbox_drain(max_batches=1)
"""


@pytest.mark.crash
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_send_has_its_row_recovered_after_the_lease(fake_provider):
    message = send_text(open_chat(provider_channel(fake_provider)), "sent by a doomed worker")
    fake_provider.add_rule("hold")  # the provider keeps the request open until released
    settings_dict = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": (
            f"postgres://{settings_dict['USER']}@{settings_dict['HOST']}:{settings_dict['PORT']}/{settings_dict['NAME']}"
        ),
    }
    worker = subprocess.Popen([sys.executable, "-c", DRAIN_SCRIPT], cwd=ROOT, env=env)
    try:
        wait_for(lambda: len(fake_provider.sends()) == 1, what="the worker's send to reach the provider")
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    fake_provider.release_held()
    row = OutboxMessage.objects.get(message=message)
    assert row.status == OutboxMessage.Status.SENDING, "the dead worker's row is stuck until its lease ends"

    assert outbox_release_expired_leases(now=timezone.now()) == 0
    after_lease = timezone.now() + timedelta(seconds=lease_seconds() + 1)
    report = outbox_drain(now=after_lease)
    assert (report.released_leases, report.sent) == (1, 1)

    row.refresh_from_db()
    message.refresh_from_db()
    assert (row.status, row.attempts) == (OutboxMessage.Status.SENT, 2)
    # Honest about the cost: the provider got the request twice (the first never got its answer to us),
    # and there is still one message, carrying the id of the attempt whose answer we recorded.
    first, second = fake_provider.sends()
    assert bodies(fake_provider) == ["sent by a doomed worker"] * 2
    assert message.wa_message_id == second.message_id != first.message_id
    assert Message.objects.filter(client_message_id=message.client_message_id).count() == 1
    assert message.events.filter(kind="retry", detail__error_code="lease").exists()


@pytest.mark.django_db(transaction=True)
def test_an_echo_and_a_delivered_status_that_beat_the_send_response_end_in_one_message(fake_provider):
    from inbox.services import inbound_events_apply

    channel = provider_channel(fake_provider)
    chat = open_chat(channel)
    message = send_text(chat, "racing my own echo")
    # Other chats' messages in the same batch take the bulk recording path beside it.
    others = [send_text(open_chat(channel), f"plain {n}") for n in range(3)]

    def webhook_first(request, message_id) -> None:
        # The provider's webhooks for this message arrive (and are processed) before it answers the send.
        if b"racing" not in request.body:
            return
        try:
            now = timezone.now()
            inbound_events_apply(
                channel=channel,
                events=[
                    InboundMessage(
                        wa_message_id=message_id,
                        wa_chat_id=chat.wa_chat_id,
                        from_me=True,
                        type="text",
                        timestamp=now,
                        text="racing my own echo",
                    ),
                    StatusUpdate(
                        wa_message_id=message_id,
                        status="delivered",
                        timestamp=now,
                        wa_chat_id=chat.wa_chat_id,
                    ),
                ],
            )
        finally:
            connection.close()

    fake_provider.before_respond = webhook_first
    outbox_drain()

    request = next(r for r in fake_provider.sends() if b"racing" in r.body)
    outbound = Message.objects.filter(chat=chat, direction=Message.Direction.OUTBOUND)
    assert outbound.count() == 1
    message.refresh_from_db()
    assert message.wa_message_id == request.message_id
    assert message.status == Message.Status.DELIVERED
    assert message.sent_at is not None and message.delivered_at is not None
    ids = {r.json["body"]: r.message_id for r in fake_provider.sends()}
    for other in others:
        other.refresh_from_db()
        assert (other.status, other.wa_message_id) == (Message.Status.SENT, ids[other.text])
        assert other.events.filter(kind="sent").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_read_status_that_beats_the_send_response_is_applied_in_a_batch(fake_provider):
    """No echo, only the status: it is parked for an id we do not know yet, and the batch's recording
    finds it and applies it to the message that gets that id."""
    from inbox.services import inbound_events_apply

    channel = provider_channel(fake_provider)
    chat = open_chat(channel)
    message = send_text(chat, "read before answered")
    others = [send_text(open_chat(channel), f"plain {n}") for n in range(3)]

    def status_first(request, message_id) -> None:
        if b"read before answered" not in request.body:
            return
        try:
            inbound_events_apply(
                channel=channel,
                events=[
                    StatusUpdate(
                        wa_message_id=message_id,
                        status="read",
                        timestamp=timezone.now(),
                        wa_chat_id=chat.wa_chat_id,
                    )
                ],
            )
        finally:
            connection.close()

    fake_provider.before_respond = status_first
    outbox_drain()

    message.refresh_from_db()
    assert message.status == Message.Status.READ and message.read_at is not None
    for other in others:
        other.refresh_from_db()
        assert other.status == Message.Status.SENT


@pytest.mark.django_db(transaction=True)
def test_a_batch_recording_waits_for_a_webhook_holding_the_same_message_id(fake_provider):
    """The batch path takes the very locks the webhook side takes (same key, same hash), so an echo being
    applied for an id and the send's recording of that id never interleave."""
    import threading

    from django.db import transaction

    from channels_app.providers.base import SendResult
    from inbox.services.receive_locks import _lock_wa_message_id
    from outbox.services import outbox_claim_batch, outbox_record_successes

    channel = provider_channel(fake_provider)
    for n in range(2):
        send_text(open_chat(channel), f"locked {n}")
    rows = outbox_claim_batch(limit=10)
    holding, release, recorded = threading.Event(), threading.Event(), threading.Event()

    def webhook_side() -> None:
        try:
            with transaction.atomic():
                _lock_wa_message_id(channel.pk, "wamid.locked-0")
                holding.set()
                release.wait(10)
        finally:
            connection.close()

    def record() -> None:
        try:
            results = [(row, SendResult(wa_message_id=f"wamid.locked-{n}")) for n, row in enumerate(rows)]
            outbox_record_successes(results=results)
            recorded.set()
        finally:
            connection.close()

    holder = threading.Thread(target=webhook_side)
    holder.start()
    assert holding.wait(10)
    recorder = threading.Thread(target=record)
    recorder.start()
    assert not recorded.wait(0.5)  # blocked on the webhook side's lock
    release.set()
    holder.join(10)
    recorder.join(10)
    assert recorded.is_set()
    assert set(Message.objects.filter(chat__channel=channel).values_list("status", flat=True)) == {"sent"}
