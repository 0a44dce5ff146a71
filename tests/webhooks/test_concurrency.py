"""Two workers processing events of the same chat at the same time (real transactions, real row locks)."""

from __future__ import annotations

import json
import threading

import pytest
from django.db import connection

from inbox.models import Chat, Message
from webhooks.models import WebhookEvent
from webhooks.processor import webhook_event_process

CHAT = "491700000001@s.whatsapp.net"


def _whapi_body(ids: range) -> bytes:
    messages = [
        {
            "id": f"race-{i:04d}-abcd",
            "from_me": False,
            "type": "text",
            "chat_id": CHAT,
            "timestamp": 1713000000 + i,
            "text": {"body": f"message {i}"},
            "from": "491700000001",
            "from_name": "Racer",
        }
        for i in ids
    ]
    return json.dumps(
        {"messages": messages, "event": {"type": "messages", "event": "post"}, "channel_id": "MANTIS-M72HC"}
    ).encode()


def _stored(channel, body: bytes) -> WebhookEvent:
    # Created directly: the endpoint's after-commit kick would process it at once in eager mode.
    return WebhookEvent.objects.create(provider="whapi", channel=channel, raw_body=body, signature_valid=True)


def _race(event_ids: list[int]) -> list[str]:
    barrier = threading.Barrier(len(event_ids))
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def work(event_id: int) -> None:
        try:
            barrier.wait(timeout=10)
            outcomes.append(webhook_event_process(event_id=event_id).status)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(event_id,)) for event_id in event_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return outcomes


@pytest.mark.django_db(transaction=True)
def test_two_processors_racing_on_one_chat_keep_counts_and_preview_right(whapi_channel):
    for round_number in range(3):
        offset = round_number * 100
        first = _stored(whapi_channel, _whapi_body(range(offset, offset + 30)))
        # Overlaps the first by 15 messages (a redelivered, partially different batch).
        second = _stored(whapi_channel, _whapi_body(range(offset + 15, offset + 45)))
        assert sorted(_race([first.pk, second.pk])) == ["processed", "processed"]

    chat = Chat.objects.get(channel=whapi_channel, wa_chat_id=CHAT)
    messages = Message.objects.filter(chat=chat)
    assert messages.count() == 3 * 45
    assert chat.unread_count == 3 * 45
    latest = messages.order_by("-sort_at", "-id").first()
    assert latest is not None
    assert chat.last_message_at == latest.sort_at
    assert chat.last_message_preview == latest.text == "message 244"
    assert Chat.objects.filter(channel=whapi_channel, wa_chat_id=CHAT).count() == 1
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"processed"}


@pytest.mark.django_db(transaction=True)
def test_two_workers_given_the_same_event_apply_it_once(whapi_channel):
    event = _stored(whapi_channel, _whapi_body(range(20)))
    outcomes = _race([event.pk, event.pk])
    assert sorted(outcomes) == ["processed", "skipped"]
    chat = Chat.objects.get(channel=whapi_channel, wa_chat_id=CHAT)
    assert chat.unread_count == 20
    assert Message.objects.filter(chat=chat).count() == 20
