"""Send-slot reservations per number (outbox.ratelimit) and the paced sender (outbox.dispatch.BatchSender).

Clocks are injected everywhere: the limiters take a fake clock (the Redis script takes it as an argument),
and the sender hands its calls to a scheduler that records the moment each call was due instead of
sleeping until it.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings

from outbox.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter, Reservation


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
def limiter_on(request: Any) -> Callable[[FakeClock], RateLimiter]:
    """Both limiters, each on a fake clock (the Redis one through the script's test-only ``now``). Keys
    are unique per test; Redis drops them a minute after their last slot."""

    def make(clock: FakeClock) -> RateLimiter:
        if request.param == "memory":
            return MemoryRateLimiter(clock=clock)
        return RedisRateLimiter(settings.REDIS_URL, clock=clock)

    return make


def unique_key() -> str:
    return f"test-{uuid.uuid4()}"


def test_reserved_slots_are_one_interval_apart_up_to_the_horizon(limiter_on):
    clock = FakeClock()
    limiter = limiter_on(clock)
    key = unique_key()
    reservation = limiter.reserve(key, rate=5.0, horizon=1.0, count=8)
    assert reservation.reserved == 5, "slots at 0, 0.2, 0.4, 0.6, 0.8 s; the one at 1.0 s is past the horizon"
    assert reservation.delays() == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])
    assert reservation.next_free_in == pytest.approx(1.0)
    assert limiter.reserve(key, rate=5.0, horizon=1.0).reserved == 0
    clock.now += 0.3
    later = limiter.reserve(key, rate=5.0, horizon=1.0, count=8)
    assert later.delays() == pytest.approx([0.7, 0.9]), "the next free slots, still 0.2 s apart"
    assert limiter.reserve(unique_key(), rate=5.0, horizon=1.0).delays() == [0.0], "each number on its own"


def test_a_slow_number_gets_one_message_at_a_time(limiter_on):
    clock = FakeClock()
    limiter = limiter_on(clock)
    key = unique_key()
    assert limiter.reserve(key, rate=0.5, horizon=1.0, count=3).reserved == 1
    nothing = limiter.reserve(key, rate=0.5, horizon=1.0)
    assert (nothing.reserved, nothing.next_free_in) == (0, pytest.approx(2.0))
    clock.now += 1.5
    assert limiter.reserve(key, rate=0.5, horizon=1.0).delays() == pytest.approx([0.5])


def test_an_unlimited_number_is_never_held(limiter_on):
    limiter = limiter_on(FakeClock())
    assert limiter.reserve(unique_key(), rate=float("inf"), horizon=1.0, count=3) == Reservation(
        first_in=0.0, interval=0.0, reserved=3, next_free_in=0.0
    )


def simulate_claims(limiter: RateLimiter, clock: FakeClock, *, rate: float, horizon: float) -> list[float]:
    """A number with a backlog, claimed at irregular moments, idle for a long while in the middle (where a
    token bucket refills its burst); returns the moment of every send, each made at its reserved slot."""
    key = unique_key()
    sends: list[float] = []
    gaps = [0.0, 0.03, 0.41, 0.2, 0.9, 0.05, 30.0, 0.0, 0.01, 0.33, 0.7, 0.02, 0.6, 1.3, 0.0, 0.25]
    for gap in gaps:
        clock.now += gap
        reservation = limiter.reserve(key, rate=rate, horizon=horizon, count=50)
        sends += [clock.now + delay for delay in reservation.delays()]
    return sorted(sends)


def most_in_any_window(moments: list[float], window: float) -> int:
    return max(sum(1 for m in moments[i:] if m < start + window) for i, start in enumerate(moments))


@pytest.mark.parametrize("rate", [80.0, 20.0, 3.0])
def test_after_an_idle_period_a_number_never_sends_more_than_rate_times_t_plus_one(limiter_on, rate):
    clock = FakeClock()
    sends = simulate_claims(limiter_on(clock), clock, rate=rate, horizon=1.0)
    assert len(sends) > 3 * rate
    gaps = [later - earlier for earlier, later in itertools.pairwise(sends)]
    assert min(gaps) >= 1 / rate - 1e-9
    for window in (0.1, 0.5, 1.0, 2.0, 8.0):
        assert most_in_any_window(sends, window) <= rate * window + 1


def test_redis_and_memory_limiters_give_the_same_slots():
    memory_clock, redis_clock = FakeClock(), FakeClock()
    memory = MemoryRateLimiter(clock=memory_clock)
    redis = RedisRateLimiter(settings.REDIS_URL, clock=redis_clock)
    key = unique_key()
    try:
        steps = [(0.0, 80.0, 10), (0.004, 80.0, 200), (0.5, 80.0, 7), (0.3, 20.0, 30), (9.0, 20.0, 1)]
        for gap, rate, count in steps:
            memory_clock.now += gap
            redis_clock.now += gap
            mine = memory.reserve(key, rate=rate, horizon=0.75, count=count)
            shared = redis.reserve(key, rate=rate, horizon=0.75, count=count)
            assert shared.reserved == mine.reserved
            assert shared.delays() == pytest.approx(mine.delays(), abs=1e-9)
            assert shared.next_free_in == pytest.approx(mine.next_free_in, abs=1e-9)
    finally:
        redis.reset(key)


def test_workers_share_one_schedule_per_number_through_redis():
    clock = FakeClock()
    key = unique_key()
    worker_1 = RedisRateLimiter(settings.REDIS_URL, clock=clock)
    worker_2 = RedisRateLimiter(settings.REDIS_URL, clock=clock)
    try:
        assert worker_1.reserve(key, rate=4.0, horizon=1.0, count=2).delays() == pytest.approx([0.0, 0.25])
        assert worker_2.reserve(key, rate=4.0, horizon=1.0, count=5).delays() == pytest.approx([0.5, 0.75])
    finally:
        worker_1.reset(key)


def test_the_redis_limiter_uses_the_server_clock_without_a_test_clock():
    limiter = RedisRateLimiter(settings.REDIS_URL)
    key = unique_key()
    try:
        assert limiter.reserve(key, rate=1.0, horizon=2.0).delays() == [0.0]
        second = limiter.reserve(key, rate=1.0, horizon=2.0)
        assert second.reserved == 1
        assert 0.5 < second.first_in <= 1.0
    finally:
        limiter.reset(key)


def test_a_paused_number_gets_no_slot_until_its_pause_ends(limiter_on):
    clock = FakeClock()
    limiter = limiter_on(clock)
    key = unique_key()
    assert limiter.paused_for(key) == 0.0
    limiter.reserve(key, rate=4.0, horizon=1.0, count=2)
    limiter.pause(key, seconds=5.0)
    assert limiter.paused_for(key) == pytest.approx(5.0)
    held_back = limiter.reserve(key, rate=4.0, horizon=1.0)
    assert (held_back.reserved, held_back.next_free_in) == (0, pytest.approx(5.0))
    limiter.pause(key, seconds=1.0)
    assert limiter.paused_for(key) == pytest.approx(5.0), "a shorter pause never shortens a longer one"
    clock.now += 4.5
    assert limiter.paused_for(key) == pytest.approx(0.5)
    assert limiter.reserve(key, rate=4.0, horizon=1.0, count=3).delays() == pytest.approx([0.5, 0.75])
    clock.now += 0.5
    assert limiter.paused_for(key) == 0.0
    assert limiter.paused_for(unique_key()) == 0.0, "each number on its own"


def test_resuming_a_number_forgets_its_pause_and_its_next_slot(limiter_on):
    limiter = limiter_on(FakeClock())
    key = unique_key()
    limiter.pause(key, seconds=30.0)
    limiter.resume(key)  # the database's record of the pause ended (outbox_resume_due_channels)
    assert limiter.paused_for(key) == 0.0
    assert limiter.reserve(key, rate=4.0, horizon=1.0).delays() == [0.0]


def test_a_pause_through_redis_reaches_every_worker_on_the_server_clock():
    key = unique_key()
    worker_1, worker_2 = RedisRateLimiter(settings.REDIS_URL), RedisRateLimiter(settings.REDIS_URL)
    try:
        worker_1.pause(key, seconds=5.0)
        assert 4.0 < worker_2.paused_for(key) <= 5.0
        assert worker_2.reserve(key, rate=80.0, horizon=1.0).reserved == 0
    finally:
        worker_1.reset(key)
    assert worker_2.paused_for(key) == 0.0


def test_when_redis_is_down_the_pause_fails_open_and_the_database_keeps_the_record():
    unreachable = RedisRateLimiter("redis://127.0.0.1:1/0")
    unreachable.pause("any-number", seconds=5.0)  # logged, not raised: the 429 is still recorded in the DB
    assert unreachable.paused_for("any-number") == 0.0


# ---------------------------------------------------------------- the paced sender


class RecordingScheduler:
    """Makes each call at once, in the order submitted, and records the moment it was due."""

    def __init__(self) -> None:
        self.moments: list[float] = []

    def submit_at(self, moment: float, call: Callable[[], Any]) -> Future[Any]:
        self.moments.append(moment)
        future: Future[Any] = Future()
        future.set_result(call())
        return future


class HeldScheduler:
    """Holds every call until the test releases them (a slot that has not come yet)."""

    def __init__(self) -> None:
        self.held: list[tuple[float, Callable[[], Any], Future[Any]]] = []

    def submit_at(self, moment: float, call: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        self.held.append((moment, call, future))
        return future

    def run_next(self) -> None:
        _, call, future = self.held.pop(0)
        future.set_result(call())


@pytest.fixture
def pace_one_second_ahead(settings):
    settings.OUTBOX_PACE_HORIZON = 1.0
    settings.OUTBOX_PACE_FRACTION = 1.0


def claim_all(now: Any, limit: int = 50) -> list[Any]:
    from outbox.services import outbox_claim_batch

    return outbox_claim_batch(limit=limit, now=now)


def test_a_numbers_rows_go_at_slots_one_interval_apart(db, fake_provider, pace_one_second_ahead):
    from django.utils import timezone

    from outbox.dispatch import BatchSender
    from outbox.models import OutboxMessage
    from outbox.services import DrainReport
    from tests.outbox.helpers import bodies, open_chat, provider_channel, send_text

    channel = provider_channel(fake_provider, rate=4.0)
    for n in range(3):
        send_text(open_chat(channel), f"m{n}")
    clock = FakeClock()
    scheduler = RecordingScheduler()
    sender = BatchSender(limiter=MemoryRateLimiter(clock=clock), scheduler=scheduler, clock=clock)
    report = DrainReport()
    sender.send(claim_all(timezone.now()), report)

    assert scheduler.moments == pytest.approx([1000.0, 1000.25, 1000.5])
    assert bodies(fake_provider) == ["m0", "m1", "m2"]
    assert (report.sent, report.deferred) == (3, 0)
    assert set(OutboxMessage.objects.values_list("status", flat=True)) == {"sent"}


def test_rows_past_the_horizon_go_back_until_half_the_horizon_is_left(
    db, fake_provider, pace_one_second_ahead
):
    from django.utils import timezone

    from channels_app.models import Channel
    from outbox.dispatch import BatchSender
    from outbox.models import OutboxMessage
    from outbox.services import DrainReport
    from tests.outbox.helpers import open_chat, provider_channel, send_text

    channel = provider_channel(fake_provider, rate=4.0)
    messages = [send_text(open_chat(channel), f"m{n}") for n in range(7)]
    now = timezone.now() + timedelta(seconds=1)
    clock = FakeClock()
    sender = BatchSender(
        now=now, limiter=MemoryRateLimiter(clock=clock), scheduler=RecordingScheduler(), clock=clock
    )
    report = DrainReport()
    sender.send(claim_all(now, limit=6), report)

    assert (report.sent, report.deferred) == (4, 2), "slots at 0, 0.25, 0.5 and 0.75 s; 1.0 s is past it"
    # The next free slot is 1 s away; the rows come back when half the horizon (0.5 s) of slots is left.
    back_at = now + timedelta(seconds=0.5)
    put_back = OutboxMessage.objects.filter(message__in=messages[4:6])
    assert {(r.status, r.attempts, r.next_attempt_at) for r in put_back} == {
        (OutboxMessage.Status.QUEUED, 0, back_at)
    }
    assert Channel.objects.get(pk=channel.pk).pacing_hold_until == back_at
    assert claim_all(back_at - timedelta(microseconds=1)) == [], "the unclaimed seventh row waits as well"
    assert [r.message_id for r in claim_all(back_at)] == [m.pk for m in messages[4:]]


def test_a_held_number_still_gets_its_rows_that_no_rate_governs_claimed(db, fake_provider):
    from django.utils import timezone

    from outbox.services import outbox_enqueue, outbox_pacing_hold
    from tests.outbox.helpers import open_chat, provider_channel, send_text

    channel = provider_channel(fake_provider, rate=4.0)
    send_text(open_chat(channel), "waits for a slot")
    delivery = outbox_enqueue(channel=channel, message_type="event_delivery", payload={})
    now = timezone.now() + timedelta(seconds=1)
    outbox_pacing_hold(channel_id=channel.pk, until=now + timedelta(seconds=1))
    assert [row.pk for row in claim_all(now)] == [delivery.pk]


def test_a_429_stops_the_numbers_held_rows_and_they_go_back_unsent(db, fake_provider, pace_one_second_ahead):
    from django.utils import timezone

    from channels_app.models import Channel
    from outbox.dispatch import BatchSender
    from outbox.models import OutboxMessage
    from outbox.services import DrainReport
    from tests.outbox.helpers import open_chat, provider_channel, send_text

    limited = provider_channel(fake_provider, rate=4.0)
    other = provider_channel(fake_provider, rate=4.0)
    held = [send_text(open_chat(limited), f"limited {n}") for n in range(3)]
    send_text(open_chat(other), "other")
    fake_provider.add_rule("rate_limit", retry_after="5", times=1)
    clock = FakeClock()
    scheduler = HeldScheduler()
    sender = BatchSender(limiter=MemoryRateLimiter(clock=clock), scheduler=scheduler, clock=clock)
    report = DrainReport()
    sender.start(claim_all(timezone.now()), report)
    while scheduler.held:
        scheduler.run_next()
    sender.finish(report)

    assert len(fake_provider.sends()) == 2, "the 429, then the other number's message; not the held rows"
    rows = {r.message_id: r for r in OutboxMessage.objects.all()}
    assert (rows[held[0].pk].status, rows[held[0].pk].attempts) == ("paused", 0)
    assert {(rows[m.pk].status, rows[m.pk].attempts) for m in held[1:]} == {("queued", 0)}
    assert all(rows[m.pk].next_attempt_at > timezone.now() + timedelta(seconds=4) for m in held[1:])
    paused_until = Channel.objects.get(pk=limited.pk).paused_until
    assert paused_until is not None and paused_until > timezone.now() + timedelta(seconds=4)
    assert (report.sent, report.paused, report.deferred) == (1, 1, 2)


def test_held_rows_are_not_sent_once_another_drain_saw_their_number_paused(
    db, fake_provider, pace_one_second_ahead
):
    from django.utils import timezone

    from outbox.dispatch import BatchSender
    from outbox.models import OutboxMessage
    from outbox.services import DrainReport, outbox_channel_pause
    from tests.outbox.helpers import open_chat, provider_channel, send_text

    channel = provider_channel(fake_provider, rate=4.0)
    messages = [send_text(open_chat(channel), f"m{n}") for n in range(3)]
    clock = FakeClock()
    scheduler = HeldScheduler()
    sender = BatchSender(limiter=MemoryRateLimiter(clock=clock), scheduler=scheduler, clock=clock)
    report = DrainReport()
    sender.start(claim_all(timezone.now()), report)
    scheduler.run_next()  # the first slot (now) comes
    # Another drain's send of this number gets a 429 Retry-After: 30 and pauses it.
    outbox_channel_pause(channel=channel, until=timezone.now() + timedelta(seconds=30), reason="429")
    sender.stop_paused_numbers()
    while scheduler.held:
        scheduler.run_next()
    sender.finish(report)

    assert len(fake_provider.sends()) == 1
    assert (report.sent, report.deferred) == (1, 2)
    later = OutboxMessage.objects.filter(message__in=messages[1:])
    assert {(r.status, r.attempts) for r in later} == {("queued", 0)}
    assert all(r.next_attempt_at > timezone.now() + timedelta(seconds=29) for r in later)


def test_a_429_in_one_drain_stops_another_drains_held_rows_of_that_number_at_their_slot(
    db, fake_provider, pace_one_second_ahead
):
    """Two drains (two senders) share the number's schedule through Redis. Drain B's send gets a 429;
    drain A's held rows of that number are not sent, though nothing has been recorded in the database."""
    from django.utils import timezone

    from channels_app.models import Channel
    from outbox.dispatch import BatchSender
    from outbox.models import OutboxMessage
    from outbox.services import DrainReport
    from tests.outbox.helpers import open_chat, provider_channel, send_text

    channel = provider_channel(fake_provider, rate=4.0)
    messages = [send_text(open_chat(channel), f"m{n}") for n in range(3)]
    clock = FakeClock()
    drain_a, drain_b = HeldScheduler(), HeldScheduler()
    sender_a = BatchSender(
        limiter=RedisRateLimiter(settings.REDIS_URL, clock=clock), scheduler=drain_a, clock=clock
    )
    sender_b = BatchSender(
        limiter=RedisRateLimiter(settings.REDIS_URL, clock=clock), scheduler=drain_b, clock=clock
    )
    report_a, report_b = DrainReport(), DrainReport()
    try:
        sender_a.start(claim_all(timezone.now(), limit=2), report_a)
        sender_b.start(claim_all(timezone.now(), limit=1), report_b)
        assert [moment for moment, _, _ in drain_b.held] == pytest.approx([1000.5]), "one shared schedule"
        fake_provider.add_rule("rate_limit", retry_after="5", times=1)
        drain_b.run_next()  # B's slot comes first here: the 429
        assert Channel.objects.get(pk=channel.pk).paused_until is None, "not recorded yet"
        while drain_a.held:
            drain_a.run_next()
        sender_a.finish(report_a)
        sender_b.finish(report_b)
    finally:
        RedisRateLimiter(settings.REDIS_URL).reset(str(channel.pk))

    assert len(fake_provider.sends()) == 1, "only the send that got the 429"
    assert (report_a.sent, report_a.deferred, report_b.paused) == (0, 2, 1)
    rows = {r.message_id: r for r in OutboxMessage.objects.all()}
    # A's rows went back unsent, due after the pause; B's recorded 429 then parked the number's rows.
    assert {(rows[m.pk].status, rows[m.pk].attempts) for m in messages} == {("paused", 0)}


class CountingLimiter(MemoryRateLimiter):
    """Counts the reads of the shared pause (each is a Redis round trip in production)."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.pause_reads: list[str] = []

    def paused_for(self, key: str) -> float:
        self.pause_reads.append(key)
        return super().paused_for(key)


def test_only_numbers_with_a_rate_read_the_shared_pause_before_each_call(db, fake_provider):
    from django.utils import timezone

    from outbox.dispatch import BatchSender
    from outbox.services import DrainReport
    from tests.outbox.helpers import open_chat, provider_channel, send_text

    paced = provider_channel(fake_provider, rate=4.0)
    unlimited = provider_channel(fake_provider, rate=float("inf"))
    for channel in (paced, unlimited):
        for n in range(2):
            send_text(open_chat(channel), f"m{n}")
    clock = FakeClock()
    limiter = CountingLimiter(clock)
    sender = BatchSender(limiter=limiter, scheduler=RecordingScheduler(), clock=clock)
    report = DrainReport()
    sender.send(claim_all(timezone.now()), report)

    assert report.sent == 4
    assert limiter.pause_reads == [str(paced.pk)] * 2, "an unlimited number's calls go as they are claimed"


def test_rows_without_a_send_slot_go_back_without_using_an_attempt(db, fake_provider):
    from outbox.models import OutboxMessage
    from outbox.services import outbox_drain
    from tests.outbox.helpers import bodies, open_chat, provider_channel, send_text

    channel = provider_channel(fake_provider, rate=1.0)
    chats = [open_chat(channel) for _ in range(4)]
    messages = [send_text(chat, f"m{i}") for i, chat in enumerate(chats)]
    now = max(OutboxMessage.objects.values_list("next_attempt_at", flat=True)) + timedelta(seconds=1)
    report = outbox_drain(now=now)
    assert (report.sent, report.deferred) == (1, 3)
    assert bodies(fake_provider) == ["m0"]
    waiting = OutboxMessage.objects.filter(message__in=messages[1:])
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
    assert sent.filter(channel=slow).count() == 1  # its one slot within the horizon; the rest wait
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


def test_a_due_call_with_nothing_waiting_goes_straight_to_the_pool():
    """Without a slot to wait for, a call does not need the scheduler's thread (one thread hand-over
    less per message); a call with a later slot, or behind one, still waits for that thread."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from outbox.dispatch import SendScheduler

    class StalledScheduler(SendScheduler):
        def _run(self) -> None:  # its thread never hands anything over
            return

    scheduler = StalledScheduler(ThreadPoolExecutor(max_workers=2))
    assert scheduler.submit_at(time.monotonic(), lambda: "now").result(timeout=2) == "now"
    later = scheduler.submit_at(time.monotonic() + 0.01, lambda: "later")
    behind = scheduler.submit_at(time.monotonic(), lambda: "behind")
    time.sleep(0.1)
    assert not later.done() and not behind.done()
