"""Draining stored events in batches: concurrent drains, due retries, and the coalesced kick."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from inbox.models import Chat, DeferredStatus, Message
from tests.threads import run_together
from webhooks import tasks
from webhooks.models import WebhookEvent
from webhooks.processor import webhook_events_drain
from webhooks.tasks import CoalescedKick


def _body(chat: int, ids: range) -> bytes:
    return json.dumps(
        {
            "messages": [
                {
                    "id": f"drain-{chat}-{i:04d}-abcd",
                    "from_me": False,
                    "type": "text",
                    "chat_id": f"49170000{chat:04d}@s.whatsapp.net",
                    "timestamp": 1713000000 + i,
                    "text": {"body": f"message {i}"},
                    "from": f"49170000{chat:04d}",
                    "from_name": f"Customer {chat}",
                }
                for i in ids
            ],
            "event": {"type": "messages", "event": "post"},
            "channel_id": "MANTIS-M72HC",
        }
    ).encode()


def _pending(channel, body: bytes, **fields) -> WebhookEvent:
    # Created directly (no after-commit kick): the drains under test are the only processors.
    return WebhookEvent.objects.create(
        provider="whapi",
        channel=channel,
        raw_body=body,
        signature_valid=True,
        next_attempt_at=fields.pop("next_attempt_at", timezone.now()),
        **fields,
    )


@pytest.mark.django_db(transaction=True)
def test_three_drains_racing_over_forty_events_process_each_exactly_once(whapi_channel):
    for n in range(40):
        # Four chats; each event redelivers two messages of the one before it.
        _pending(whapi_channel, _body(n % 4, range(n * 3, n * 3 + 5)))
    run_together(lambda: webhook_events_drain(batch_size=7), 3)
    events = WebhookEvent.objects.filter(channel=whapi_channel)
    assert set(events.values_list("status", "attempts")) == {("processed", 1)}
    for chat_number in range(4):
        chat = Chat.objects.get(channel=whapi_channel, wa_chat_id=f"49170000{chat_number:04d}@s.whatsapp.net")
        expected = {
            f"drain-{chat_number}-{i:04d}-abcd"
            for n in range(chat_number, 40, 4)
            for i in range(n * 3, n * 3 + 5)
        }
        assert set(Message.objects.filter(chat=chat).values_list("wa_message_id", flat=True)) == expected
        assert Message.objects.filter(chat=chat).count() == len(expected)
        assert chat.unread_count == len(expected)


@pytest.mark.django_db
def test_a_drain_takes_due_retries_but_not_later_ones_nor_events_kept_for_inspection(whapi_channel):
    now = timezone.now()
    due = _pending(whapi_channel, _body(1, range(2)), status="failed", attempts=1, next_attempt_at=now)
    later = _pending(
        whapi_channel,
        _body(2, range(2)),
        status="failed",
        attempts=1,
        next_attempt_at=now + timedelta(minutes=1),
    )
    kept = _pending(whapi_channel, b"not json", status="failed", next_attempt_at=None)
    report = webhook_events_drain()
    assert (report.claimed, report.processed) == (1, 1)
    statuses = dict(WebhookEvent.objects.values_list("pk", "status"))
    assert statuses == {due.pk: "processed", later.pk: "failed", kept.pk: "failed"}


def test_a_burst_of_kicks_publishes_at_most_twice_and_once_after_the_last_kick() -> None:
    published = threading.Semaphore(0)
    publish_times: list[float] = []

    def publish() -> None:
        publish_times.append(time.monotonic())
        published.release()

    kick = CoalescedKick(publish, interval=0.2)
    for _ in range(50):
        kick()
    last_kick = time.monotonic()
    assert published.acquire(timeout=5)
    if publish_times[-1] < last_kick:  # the first publish started during the burst: one more follows it
        assert published.acquire(timeout=5)
    assert publish_times[-1] >= last_kick
    assert not published.acquire(timeout=0.5)  # nothing more: the 50 kicks cost at most two publishes
    assert len(publish_times) <= 2
    kick()  # a kick after the burst: published again, not dropped
    assert published.acquire(timeout=5)


def test_a_kick_returns_without_waiting_for_the_publish() -> None:
    release = threading.Event()
    started = threading.Event()

    def slow_publish() -> None:  # a broker round trip that hangs
        started.set()
        release.wait(timeout=10)

    kick = CoalescedKick(slow_publish, interval=0.01)
    kick()  # would hang here if the caller (a webhook's ack) published itself
    assert started.wait(timeout=5)
    kick()
    release.set()


@pytest.mark.django_db(transaction=True)
def test_storing_events_outside_eager_mode_kicks_one_coalesced_drain(whapi_channel, settings, monkeypatch):
    from webhooks.services import webhook_event_store

    settings.CELERY_TASK_ALWAYS_EAGER = False
    published: list[int] = []
    monkeypatch.setattr(tasks, "_coalesced_kick", CoalescedKick(lambda: published.append(1), interval=60))
    for n in range(5):
        with transaction.atomic():
            webhook_event_store(
                provider="whapi",
                channels=[whapi_channel],
                raw_body=_body(n, range(1)),
                headers={},
                signature_valid=True,
                event_type="messages.post",
            )
    deadline = time.monotonic() + 5
    while not published and time.monotonic() < deadline:  # the kick publishes on its own thread
        time.sleep(0.01)
    time.sleep(0.1)
    assert published == [1]  # five commits, one drain task (the rest ride on a scheduled one)
    assert WebhookEvent.objects.filter(status="pending").count() == 5


@pytest.mark.django_db
def test_a_drain_batch_looks_up_its_workspaces_subscriptions_once(whapi_channel):
    for n in range(5):
        _pending(whapi_channel, _body(10 + n, range(2)))
    with CaptureQueriesContext(connection) as queries:
        report = webhook_events_drain(batch_size=50)
    assert report.processed == 5
    lookups = [q["sql"] for q in queries.captured_queries if "outbox_eventsubscription" in q["sql"]]
    assert len(lookups) == 1  # not one per event (each event's own apply opens a nested sharing scope)


def _edit(chat: int, i: int, text: str) -> bytes:
    target = f"drain-{chat}-{i:04d}-abcd"
    message = {
        "from_me": False,
        "chat_id": f"49170000{chat:04d}@s.whatsapp.net",
        "from": f"49170000{chat:04d}",
        "id": target,
        "type": "text",
        "timestamp": 1713000000 + i,
    }
    return json.dumps(
        {
            "messages_updates": [
                {
                    "id": target,
                    "trigger": {
                        **message,
                        "id": f"edit-{target}",
                        "type": "action",
                        "timestamp": 1713009999,
                        "action": {"type": "edited", "target": target},
                    },
                    "before_update": {**message, "text": {"body": f"message {i}"}},
                    "after_update": {**message, "text": {"body": text}},
                    "changes": ["text"],
                }
            ],
            "event": {"type": "messages", "method": "patch"},
            "channel_id": "MANTIS-M72HC",
        }
    ).encode()


def _status_for_unknown_id() -> bytes:
    return json.dumps(
        {
            "statuses": [{"id": "not-ours-yet", "status": "delivered", "timestamp": "1713000100"}],
            "event": {"type": "statuses", "event": "post"},
            "channel_id": "MANTIS-M72HC",
        }
    ).encode()


@pytest.mark.django_db
def test_a_drain_applies_plain_messages_together_and_the_rest_one_by_one_in_order(whapi_channel):
    plain = [_pending(whapi_channel, _body(n % 3, range(n, n + 1))) for n in range(30)]
    edit = _pending(whapi_channel, _edit(1, 4, "edited after its message, in the same batch"))
    status = _pending(whapi_channel, _status_for_unknown_id())
    broken = _pending(whapi_channel, b"{not json")
    with CaptureQueriesContext(connection) as queries:
        report = webhook_events_drain(batch_size=50)

    assert (report.processed, report.dead) == (32, 1)
    assert WebhookEvent.objects.get(pk=broken.pk).status == "dead"
    assert set(
        WebhookEvent.objects.filter(pk__in=[e.pk for e in [*plain, edit, status]]).values_list(
            "status", flat=True
        )
    ) == {"processed"}
    assert Message.objects.filter(channel=whapi_channel, wa_message_id__startswith="drain-").count() == 30
    # The edit was claimed with its message and applied after it, as in claim order.
    assert (
        Message.objects.get(wa_message_id="drain-1-0004-abcd").text
        == "edited after its message, in the same batch"
    )
    assert DeferredStatus.objects.filter(channel=whapi_channel, wa_message_id="not-ours-yet").exists()
    chats = Chat.objects.filter(channel=whapi_channel, wa_chat_id__startswith="49170000")
    assert sorted(chats.values_list("unread_count", flat=True)) == [10, 10, 10]
    # Thirty deliveries one by one take about ten statements each; together they take a handful.
    inserts = [q for q in queries.captured_queries if re.search(r'INSERT INTO "?inbox_message"? ', q["sql"])]
    assert len(inserts) == 1
    assert len(queries.captured_queries) < 60


@pytest.mark.django_db
def test_when_applying_together_fails_each_delivery_is_applied_on_its_own(whapi_channel, monkeypatch):
    from webhooks import processor

    real_apply = processor.inbound_messages_apply_batch
    calls = []

    def apply_then_fail(**kwargs):
        calls.append(len(kwargs["received"]))
        real_apply(**kwargs)
        raise RuntimeError("the database went away half-way")

    monkeypatch.setattr(processor, "inbound_messages_apply_batch", apply_then_fail)
    # The second delivery repeats two of the first's messages.
    events = [_pending(whapi_channel, _body(1, range(n * 3, n * 3 + 5))) for n in range(4)]
    report = webhook_events_drain(batch_size=50)

    assert calls == [20]
    assert report.processed == 4
    assert set(
        WebhookEvent.objects.filter(pk__in=[e.pk for e in events]).values_list("status", "attempts")
    ) == {("processed", 1)}
    expected = {f"drain-1-{i:04d}-abcd" for i in range(14)}
    assert (
        set(
            Message.objects.filter(channel=whapi_channel, wa_message_id__startswith="drain-").values_list(
                "wa_message_id", flat=True
            )
        )
        == expected
    )
    assert (
        Chat.objects.get(channel=whapi_channel, wa_chat_id="491700000001@s.whatsapp.net").unread_count == 14
    )


@pytest.mark.django_db(transaction=True)
def test_kicks_publish_no_second_drain_task_while_one_is_queued_and_not_started(
    whapi_channel, settings, monkeypatch
):
    import uuid

    settings.CELERY_TASK_ALWAYS_EAGER = False
    monkeypatch.setattr(tasks.DrainQueuedSlot, "KEY", f"test:drain-queued:{uuid.uuid4().hex}")
    published: list[int] = []
    monkeypatch.setattr(tasks.webhook_events_drain_task, "apply_async", lambda **kw: published.append(1))

    for _ in range(3):
        tasks._publish_drain()
    assert published == [1]  # the second and third kicks ride on the queued task

    # The queued task starts: it frees the slot before it claims, so it takes events stored meanwhile.
    event = _pending(whapi_channel, _body(1, range(1)))
    report = tasks.webhook_events_drain_task.run()
    assert report["processed"] == 1
    assert WebhookEvent.objects.get(pk=event.pk).status == "processed"
    tasks._publish_drain()
    assert published == [1, 1]  # once it started, the next kick queues a new one


def test_a_drain_task_that_could_not_be_published_frees_the_slot(settings, monkeypatch):
    import uuid

    settings.CELERY_TASK_ALWAYS_EAGER = False
    monkeypatch.setattr(tasks.DrainQueuedSlot, "KEY", f"test:drain-queued:{uuid.uuid4().hex}")
    attempts: list[int] = []

    def broker_down(**kwargs):
        attempts.append(1)
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(tasks.webhook_events_drain_task, "apply_async", broker_down)
    tasks._publish_drain()
    tasks._publish_drain()
    assert attempts == [1, 1]  # not held by a task that was never queued


@pytest.mark.django_db
def test_a_drain_with_an_idle_wait_looks_once_more_before_it_stops(whapi_channel, monkeypatch):
    import time as time_module

    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 1:  # an event arrives while the drain waits
            _pending(whapi_channel, _body(3, range(1)))

    monkeypatch.setattr(time_module, "sleep", sleep)
    report = webhook_events_drain(idle_wait=0.05)
    assert report.processed == 1
    assert waits == [0.05, 0.05]  # it waited, found the event, waited again, found nothing, stopped
    assert webhook_events_drain().processed == 0 and waits == [0.05, 0.05]  # no wait unless asked


def test_an_eager_drain_task_never_waits_on_the_request_path(settings, monkeypatch):
    from webhooks.processor import DrainReport

    waits: list[float] = []

    def drain(**kwargs: float) -> DrainReport:
        waits.append(kwargs["idle_wait"])
        return DrainReport(finished=True)

    monkeypatch.setattr(tasks, "webhook_events_drain", drain)
    monkeypatch.setattr(tasks.DrainQueuedSlot, "release", classmethod(lambda cls: None))
    settings.CELERY_TASK_ALWAYS_EAGER = True  # the task runs inside the kick, before the webhook's answer
    tasks.webhook_events_drain_task.run()
    settings.CELERY_TASK_ALWAYS_EAGER = False
    tasks.webhook_events_drain_task.run()
    assert waits == [0.0, tasks.DRAIN_IDLE_WAIT]


@pytest.mark.django_db(transaction=True)
def test_kicks_publish_nothing_while_a_drain_runs_and_a_stopping_drain_looks_once_more(
    whapi_channel, settings, monkeypatch
):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    published: list[int] = []
    monkeypatch.setattr(tasks.webhook_events_drain_task, "apply_async", lambda **kw: published.append(1))
    tasks.DrainRunning.mark()
    tasks._publish_drain()
    assert published == []  # the running drain claims again after this kick

    stops: list[int] = []

    def stopping() -> None:
        stops.append(1)
        tasks.DrainRunning.clear()
        if len(stops) == 1:  # an event whose kick saw the mark just before the drain gave up
            _pending(whapi_channel, _body(5, range(1)))

    report = webhook_events_drain(on_stopping=stopping)
    assert (report.processed, report.finished, len(stops)) == (1, True, 2)  # its last look took it
    assert not tasks.DrainRunning.is_set()
    tasks._publish_drain()
    assert published == [1]  # no drain running: the kick publishes


def test_a_drain_task_out_of_time_hands_over_and_one_with_a_backlog_asks_for_a_helper(settings, monkeypatch):
    from webhooks.processor import DrainReport

    settings.CELERY_TASK_ALWAYS_EAGER = False
    published: list[int] = []
    monkeypatch.setattr(tasks.webhook_events_drain_task, "apply_async", lambda **kw: published.append(1))
    marked_while_running: list[bool] = []

    def drain(**kwargs: Any) -> DrainReport:
        marked_while_running.append(tasks.DrainRunning.is_set())
        kwargs["on_busy"](settings.WEBHOOK_DRAIN_BATCH_SIZE)  # a full claim: a backlog
        tasks.DrainQueuedSlot.release()  # the helper started
        kwargs["on_busy"](1)
        return DrainReport(claimed=101, processed=101, finished=False)  # the time budget ran out

    monkeypatch.setattr(tasks, "webhook_events_drain", drain)
    tasks.webhook_events_drain_task.run()
    assert marked_while_running == [True]
    assert published == [1, 1]  # the helper, then the drain that takes over
    assert not tasks.DrainRunning.is_set()


@pytest.mark.django_db
def test_a_drain_spaces_its_claims_unless_the_last_one_was_full(whapi_channel, monkeypatch):
    import time as time_module

    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) < 3:  # the next event arrives while the drain waits
            _pending(whapi_channel, _body(6, range(len(waits), len(waits) + 1)))

    monkeypatch.setattr(time_module, "sleep", sleep)
    _pending(whapi_channel, _body(6, range(1)))
    report = webhook_events_drain(claim_interval=30.0)
    assert report.processed == 3
    assert len(waits) == 3 and all(0 < wait <= 30.0 for wait in waits)  # before each claim after the first

    waits.clear()
    for n in range(3):
        _pending(whapi_channel, _body(7, range(n, n + 1)))
    report = webhook_events_drain(batch_size=1, claim_interval=30.0, max_batches=3)
    assert report.processed == 3 and waits == []  # each claim came back full: a backlog, no waiting


@pytest.mark.django_db
def test_claimed_events_come_back_with_the_claim_as_the_orm_loads_them(whapi_channel):
    from webhooks.processor import webhook_events_claim_batch

    event = _pending(whapi_channel, b"\x00\xffbinary", headers={"content-type": "application/json"})
    (claimed,) = webhook_events_claim_batch(limit=10)
    loaded = WebhookEvent.objects.get(pk=event.pk)
    field_names = [field.attname for field in WebhookEvent._meta.concrete_fields]
    as_claimed = {name: getattr(claimed, name) for name in field_names}
    assert as_claimed == {name: getattr(loaded, name) for name in field_names}
    assert (as_claimed["status"], as_claimed["attempts"]) == ("processing", 1)
    assert bytes(claimed.raw_body) == b"\x00\xffbinary" and claimed.headers == {
        "content-type": "application/json"
    }
    assert claimed.channel == whapi_channel and claimed.channel.workspace_id == whapi_channel.workspace_id
