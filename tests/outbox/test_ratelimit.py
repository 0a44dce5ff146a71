"""The per-number token bucket, in process (with a clock seam) and shared through Redis."""

from __future__ import annotations

import uuid

import pytest
from django.conf import settings

from outbox.ratelimit import MemoryTokenBucket, RedisTokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_one_seconds_worth_then_says_how_long_to_wait():
    clock = FakeClock()
    bucket = MemoryTokenBucket(clock=clock)
    assert [bucket.take("ch", 5.0) for _ in range(5)] == [0.0] * 5
    assert bucket.take("ch", 5.0) == pytest.approx(0.2)
    clock.now += 0.2
    assert bucket.take("ch", 5.0) == 0.0
    assert bucket.take("other", 5.0) == 0.0, "each number has its own bucket"


def test_a_slow_number_still_gets_one_message_at_a_time():
    clock = FakeClock()
    bucket = MemoryTokenBucket(clock=clock)
    assert bucket.take("ch", 0.5) == 0.0
    assert bucket.take("ch", 0.5) == pytest.approx(2.0)
    clock.now += 2.0
    assert bucket.take("ch", 0.5) == 0.0


def test_workers_share_one_bucket_per_number_through_redis():
    assert settings.REDIS_URL, "the test settings point at Redis"
    key = f"test-{uuid.uuid4()}"
    worker_1, worker_2 = RedisTokenBucket(settings.REDIS_URL), RedisTokenBucket(settings.REDIS_URL)
    try:
        taken = [worker_1.take(key, 2.0), worker_2.take(key, 2.0)]
        assert taken == [0.0, 0.0]
        wait = worker_1.take(key, 2.0)
        assert 0.0 < wait <= 0.5
        assert worker_2.take(f"{key}-other", 2.0) == 0.0
    finally:
        worker_1.reset(key)
        worker_1.reset(f"{key}-other")


def test_a_number_out_of_tokens_has_its_rows_put_back_without_using_an_attempt(db, fake_provider):
    from datetime import timedelta

    from outbox.models import OutboxMessage
    from outbox.services import outbox_drain
    from tests.outbox.helpers import bodies, open_chat, provider_channel, send_text

    channel = provider_channel(fake_provider, rate=2.0)
    chats = [open_chat(channel) for _ in range(4)]
    messages = [send_text(chat, f"m{i}") for i, chat in enumerate(chats)]
    now = max(OutboxMessage.objects.values_list("next_attempt_at", flat=True)) + timedelta(seconds=1)
    report = outbox_drain(now=now)
    assert (report.sent, report.deferred) == (2, 2)
    assert sorted(bodies(fake_provider)) == ["m0", "m1"]
    waiting = OutboxMessage.objects.filter(message__in=messages[2:])
    assert {(r.status, r.attempts) for r in waiting} == {(OutboxMessage.Status.QUEUED, 0)}
    assert all(now < r.next_attempt_at <= now + timedelta(seconds=1) for r in waiting)


@pytest.mark.django_db(transaction=True)
def test_a_throttled_numbers_backlog_does_not_starve_other_numbers(fake_provider) -> None:
    """Number A (1 msg/s) has an older backlog over many chats; number B's newer rows still go next batch."""
    from django.utils import timezone

    from outbox.models import OutboxMessage
    from outbox.services import outbox_drain
    from tests.outbox.helpers import open_chat, provider_channel, send_text

    slow = provider_channel(fake_provider, rate=1.0)
    fast = provider_channel(fake_provider, rate=1000.0)
    for i in range(40):
        send_text(open_chat(slow), f"backlog {i}")
    for i in range(5):
        send_text(open_chat(fast), f"fast {i}")

    report = outbox_drain(batch_size=10, max_batches=2, now=timezone.now())

    sent = OutboxMessage.objects.filter(status="sent")
    assert sent.filter(channel=fast).count() == 5
    assert sent.filter(channel=slow).count() == 1  # its one token; the rest wait for the bucket
    assert report.batches == 2


@pytest.mark.django_db(transaction=True)
def test_a_running_drain_resumes_a_number_whose_pause_ended(fake_provider) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from channels_app.models import Channel
    from outbox.models import OutboxMessage
    from outbox.services import outbox_channel_pause, outbox_drain
    from tests.outbox.helpers import open_chat, provider_channel, send_text

    paused = provider_channel(fake_provider)
    busy = provider_channel(fake_provider)
    send_text(open_chat(paused), "waits for Retry-After")
    outbox_channel_pause(channel=paused, until=timezone.now() + timedelta(seconds=0.3), reason="429")
    for i in range(3):
        send_text(open_chat(busy), f"busy {i}")
    ticks = iter(range(1000))
    import time

    def clock() -> float:
        # Each call is a quarter second later; the drain's claims also wait for real time to pass 0.3 s.
        time.sleep(0.05)
        return next(ticks) * 0.25

    outbox_drain(batch_size=1, time_budget=3.0, clock=clock)
    assert OutboxMessage.objects.get(channel=paused).status == "sent"
    assert Channel.objects.get(pk=paused.pk).status == Channel.Status.CONNECTED
