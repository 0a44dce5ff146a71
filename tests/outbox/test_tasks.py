"""The after-commit kick, the embedded drainer thread, the beat backstop entry and the sandbox loop."""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.db import connection

from inbox.models import Message
from outbox.models import OutboxMessage
from outbox.tasks import EmbeddedDrainer, outbox_drain_task
from tests.outbox.helpers import open_chat, provider_channel, send_text


def wait_for(condition, *, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def test_beat_drains_the_outbox_every_second_as_a_backstop():
    entry = settings.CELERY_BEAT_SCHEDULE["outbox-drain"]
    assert entry["task"] == outbox_drain_task.name == "outbox.tasks.outbox_drain"
    assert entry["schedule"] == 1.0


@pytest.mark.django_db
def test_the_drain_task_sends_what_is_due(fake_provider):
    message = send_text(open_chat(provider_channel(fake_provider)), "from the task")
    result = outbox_drain_task.apply().get()
    message.refresh_from_db()
    assert result["sent"] == 1
    assert message.status == Message.Status.SENT


@pytest.mark.django_db
def test_enqueueing_kicks_a_drain_only_after_commit(
    fake_provider, settings, django_capture_on_commit_callbacks, monkeypatch
):
    kicks: list[str] = []
    monkeypatch.setattr("outbox.tasks.outbox_drain_task.apply_async", lambda **kw: kicks.append("celery"))
    settings.OUTBOX_AUTO_DRAIN = True
    settings.CELERY_TASK_ALWAYS_EAGER = False  # production shape: the kick is a Celery task
    chat = open_chat(provider_channel(fake_provider))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        send_text(chat, "kick me")
        assert kicks == []
    assert kicks == ["celery"]
    assert len(callbacks) >= 1


@pytest.mark.django_db(transaction=True)
def test_the_embedded_drainer_thread_sends_after_commit_without_celery(fake_provider, settings, monkeypatch):
    drainer = EmbeddedDrainer(interval=0.2)
    monkeypatch.setattr("outbox.tasks.embedded_drainer", drainer)
    settings.OUTBOX_AUTO_DRAIN = True
    settings.CELERY_TASK_ALWAYS_EAGER = True  # embedded shape: no broker
    try:
        message = send_text(open_chat(provider_channel(fake_provider)), "embedded")
        wait_for(lambda: Message.objects.get(pk=message.pk).status == Message.Status.SENT, what="the drainer")
    finally:
        drainer.stop()
    assert len(fake_provider.sends()) == 1
    assert OutboxMessage.objects.get(message=message).status == OutboxMessage.Status.SENT


@pytest.mark.django_db(transaction=True)
def test_a_sandbox_reply_is_delivered_then_read_through_the_inbound_path(settings):
    from outbox.services import outbox_drain

    settings.SANDBOX_DELIVERED_AFTER = 0.05
    settings.SANDBOX_READ_AFTER = 0.1
    channel = provider_channel(None, provider="sandbox")
    message = send_text(open_chat(channel), "hello sandbox")
    outbox_drain()
    message.refresh_from_db()
    assert message.status in (Message.Status.SENT, Message.Status.DELIVERED, Message.Status.READ)
    assert message.wa_message_id.startswith("sandbox.")
    wait_for(lambda: Message.objects.get(pk=message.pk).status == Message.Status.READ, what="the read status")
    message.refresh_from_db()
    assert message.delivered_at is not None and message.read_at is not None
    kinds = list(message.events.values_list("kind", flat=True))
    assert kinds.index("sent") < kinds.index("delivered") < kinds.index("read")
    connection.close()
