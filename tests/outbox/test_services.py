"""The outbox state machine over real HTTP to the fake provider, with the clock passed in (``now=``)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from channels_app.models import Channel
from inbox.models import Message, MessageEvent
from outbox.models import OutboxMessage
from outbox.services import (
    OutboxError,
    outbox_cancel,
    outbox_claim_batch,
    outbox_drain,
    outbox_queue_depth,
    outbox_release_expired_leases,
    outbox_retry_now,
    retry_delay,
)
from tests.outbox.helpers import bodies, open_chat, provider_channel, send_text

pytestmark = pytest.mark.django_db


def row_of(message: Message) -> OutboxMessage:
    return OutboxMessage.objects.get(message=message)


def test_the_retry_delays_double_from_one_minute_and_cap_at_sixteen():
    assert [retry_delay(n) for n in range(1, 8)] == [timedelta(minutes=m) for m in (1, 2, 4, 8, 16, 16, 16)]


def test_it_sends_a_queued_message_and_records_the_provider_id(fake_provider):
    chat = open_chat(provider_channel(fake_provider))
    message = send_text(chat, "Hello Ana")
    report = outbox_drain()
    assert (report.claimed, report.sent) == (1, 1)
    [request] = fake_provider.sends()
    message.refresh_from_db()
    row = row_of(message)
    assert row.status == OutboxMessage.Status.SENT
    assert row.attempts == 1
    assert message.status == Message.Status.SENT
    assert message.wa_message_id == request.message_id
    kinds = list(message.events.values_list("kind", flat=True))
    assert kinds[:3] == [MessageEvent.Kind.QUEUED, MessageEvent.Kind.CLAIMED, MessageEvent.Kind.SENT]


def test_it_retries_at_once_then_after_1_2_4_8_16_minutes_then_fails(fake_provider):
    chat = open_chat(provider_channel(fake_provider))
    fake_provider.add_rule("server_error", status=503, times=-1)
    message = send_text(chat, "Will it ever go?")
    now = row_of(message).next_attempt_at

    outbox_drain(now=now)
    assert len(fake_provider.sends()) == 1
    for minutes in (1, 2, 4, 8, 16):
        row = row_of(message)
        assert row.status == OutboxMessage.Status.QUEUED
        assert row.next_attempt_at == now + timedelta(minutes=minutes)
        calls = len(fake_provider.sends())
        outbox_drain(now=row.next_attempt_at - timedelta(seconds=1))
        assert len(fake_provider.sends()) == calls, "nothing goes before its time"
        now = row.next_attempt_at
        outbox_drain(now=now)
        assert len(fake_provider.sends()) == calls + 1

    row = row_of(message)
    message.refresh_from_db()
    assert row.status == OutboxMessage.Status.FAILED
    assert row.attempts == 6
    assert message.status == Message.Status.FAILED
    assert "gave up after 6 attempts" in message.error_message
    assert "503" in message.error_message
    assert message.events.filter(kind=MessageEvent.Kind.RETRY).count() == 5
    assert message.events.filter(kind=MessageEvent.Kind.FAILED).count() == 1
    outbox_drain(now=now + timedelta(hours=1))
    assert len(fake_provider.sends()) == 6


def test_a_transient_failure_then_success_ends_sent(fake_provider):
    chat = open_chat(provider_channel(fake_provider))
    fake_provider.add_rule("disconnect")
    fake_provider.add_rule("server_error", status=502)
    message = send_text(chat, "flaky")
    now = row_of(message).next_attempt_at
    outbox_drain(now=now)
    assert row_of(message).status == OutboxMessage.Status.QUEUED
    outbox_drain(now=now + timedelta(minutes=1))
    assert row_of(message).next_attempt_at == now + timedelta(minutes=3)
    outbox_drain(now=now + timedelta(minutes=3))
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert row_of(message).attempts == 3
    assert bodies(fake_provider) == ["flaky", "flaky", "flaky"]


def test_a_permanent_error_fails_at_once_with_the_reason_the_agent_sees(fake_provider):
    chat = open_chat(provider_channel(fake_provider, provider="meta"))
    fake_provider.add_rule("meta_error", code=131047, status=400, message="Re-engagement message")
    message = send_text(chat, "too late")
    outbox_drain()
    message.refresh_from_db()
    assert row_of(message).status == OutboxMessage.Status.FAILED
    assert (message.status, message.error_code) == (Message.Status.FAILED, "131047")
    assert message.error_message == "outside the 24-hour window: send a template"
    assert len(fake_provider.sends()) == 1


@pytest.mark.parametrize(
    ("provider", "rule"),
    [
        ("meta", {"kind": "meta_error", "code": 190, "status": 400}),
        ("whapi", {"kind": "whapi_error", "status": 401}),
    ],
)
def test_an_invalid_token_fails_the_message_and_disconnects_the_number(fake_provider, provider, rule):
    channel = provider_channel(fake_provider, provider=provider)
    fake_provider.add_rule(rule.pop("kind"), **rule)
    message = send_text(open_chat(channel), "hello")
    outbox_drain()
    message.refresh_from_db()
    channel.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert channel.status == Channel.Status.DISCONNECTED
    assert "token" in channel.status_detail


def test_a_pair_limit_retries_that_message_while_the_number_keeps_sending(fake_provider):
    channel = provider_channel(fake_provider, provider="meta")
    chat_1, chat_2 = open_chat(channel), open_chat(channel)
    fake_provider.add_rule(
        "meta_error", code=131056, status=400, message="pair rate limit hit", body_contains="to Ana"
    )
    first = send_text(chat_1, "to Ana")
    second = send_text(chat_2, "to Ben")
    now = row_of(first).next_attempt_at + timedelta(seconds=1)
    outbox_drain(now=now)
    channel.refresh_from_db()
    assert channel.status == Channel.Status.CONNECTED
    assert row_of(first).status == OutboxMessage.Status.QUEUED
    assert row_of(first).next_attempt_at == now + timedelta(minutes=1)
    assert row_of(second).status == OutboxMessage.Status.SENT


def test_it_keeps_a_chats_order_while_an_earlier_message_retries(fake_provider):
    channel = provider_channel(fake_provider)
    chat, other_chat = open_chat(channel), open_chat(channel)
    fake_provider.add_rule("server_error", status=500, body_contains='"one"')
    first, second, third = (send_text(chat, t) for t in ("one", "two", "three"))
    elsewhere = send_text(other_chat, "other chat")
    now = row_of(third).next_attempt_at + timedelta(seconds=1)

    outbox_drain(now=now)
    # Two and three wait behind the retrying one; the other chat is not held up.
    assert sorted(bodies(fake_provider)) == ["one", "other chat"]
    assert row_of(second).status == row_of(third).status == OutboxMessage.Status.QUEUED
    assert row_of(second).attempts == 0
    outbox_drain(now=now + timedelta(seconds=59))
    assert len(bodies(fake_provider)) == 2
    outbox_drain(now=now + timedelta(minutes=1))
    assert bodies(fake_provider)[2:] == ["one", "two", "three"]
    for message in (first, second, third, elsewhere):
        message.refresh_from_db()
        assert message.status == Message.Status.SENT


def test_once_an_earlier_message_failed_for_good_the_next_one_goes(fake_provider):
    chat = open_chat(provider_channel(fake_provider))
    fake_provider.add_rule(
        "whapi_error", status=403, message="It is forbidden to send to this group/recipient"
    )
    first, second = send_text(chat, "one"), send_text(chat, "two")
    outbox_drain()
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == Message.Status.FAILED
    assert second.status == Message.Status.SENT
    assert bodies(fake_provider) == ["one", "two"]


def test_a_429_pauses_that_number_until_retry_after_and_other_numbers_keep_sending(fake_provider):
    limited = provider_channel(fake_provider, token="token-limited")
    healthy = provider_channel(fake_provider, provider="meta", token="token-healthy")
    fake_provider.add_rule("rate_limit", token="token-limited", retry_after="30")
    limited_chat, healthy_chat = open_chat(limited), open_chat(healthy)
    a1, a2 = send_text(limited_chat, "a1"), send_text(limited_chat, "a2")
    b1, b2 = send_text(healthy_chat, "b1"), send_text(healthy_chat, "b2")
    now = row_of(b2).next_attempt_at + timedelta(seconds=1)

    outbox_drain(now=now)
    limited.refresh_from_db()
    assert limited.status == Channel.Status.DEGRADED
    assert limited.paused_until == now + timedelta(seconds=30)
    assert row_of(a1).status == row_of(a2).status == OutboxMessage.Status.PAUSED
    assert row_of(a1).attempts == 0, "a rate limit does not use up an attempt"
    assert row_of(b1).status == row_of(b2).status == OutboxMessage.Status.SENT
    assert sorted(bodies(fake_provider)) == ["a1", "b1", "b2"]

    outbox_drain(now=now + timedelta(seconds=29))
    assert len(bodies(fake_provider)) == 3

    b3 = send_text(healthy_chat, "b3")
    outbox_drain(now=max(now + timedelta(seconds=31), row_of(b3).next_attempt_at))
    limited.refresh_from_db()
    assert limited.status == Channel.Status.CONNECTED
    assert limited.paused_until is None
    later = bodies(fake_provider)[3:]
    assert sorted(later) == ["a1", "a2", "b3"]
    assert later.index("a1") < later.index("a2"), "the limited chat keeps its order"
    for message in (a1, a2, b1, b2, b3):
        message.refresh_from_db()
        assert message.status == Message.Status.SENT


def test_an_admin_paused_number_sends_nothing_until_resumed(fake_provider):
    from channels_app.services import channel_pause, channel_resume

    channel = provider_channel(fake_provider)
    message = send_text(open_chat(channel), "held")
    channel_pause(channel=channel)
    outbox_drain()
    assert fake_provider.sends() == []
    channel_resume(channel=channel)
    outbox_drain()
    message.refresh_from_db()
    assert message.status == Message.Status.SENT


def test_an_expired_lease_puts_the_row_back_and_a_live_lease_is_left_alone(fake_provider):
    message = send_text(open_chat(provider_channel(fake_provider)), "claimed by a worker that died")
    now = row_of(message).next_attempt_at
    [row] = outbox_claim_batch(now=now)
    assert row.status == OutboxMessage.Status.SENDING
    assert row.lease_expires_at is not None
    assert outbox_release_expired_leases(now=now + timedelta(seconds=60)) == 0
    assert outbox_release_expired_leases(now=row.lease_expires_at + timedelta(seconds=1)) == 1
    row.refresh_from_db()
    assert (row.status, row.attempts, row.last_error_code) == (OutboxMessage.Status.QUEUED, 1, "lease")


def test_a_drain_that_lost_its_lease_cannot_overwrite_the_newer_attempt(fake_provider):
    from channels_app.providers.base import SendResult
    from outbox.services import outbox_record_success

    message = send_text(open_chat(provider_channel(fake_provider)), "slow worker")
    now = row_of(message).next_attempt_at
    [stale] = outbox_claim_batch(now=now)
    assert stale.lease_expires_at is not None
    outbox_release_expired_leases(now=stale.lease_expires_at + timedelta(seconds=1))
    [fresh] = outbox_claim_batch(now=stale.lease_expires_at + timedelta(seconds=2))
    assert fresh.attempts == 2
    assert outbox_record_success(row=stale, result=SendResult(wa_message_id="late-id"), now=now) is False
    assert outbox_record_success(row=fresh, result=SendResult(wa_message_id="fresh-id"), now=now) is True
    message.refresh_from_db()
    assert message.wa_message_id == "fresh-id"


def test_retry_now_sends_a_waiting_row_at_once_and_revives_a_failed_one(fake_provider, team):
    chat = open_chat(provider_channel(fake_provider, workspace=team.workspace_a, token="token-retrying"))
    other = open_chat(provider_channel(fake_provider, workspace=team.workspace_a, token="token-failing"))
    fake_provider.add_rule("server_error", status=500, token="token-retrying")
    fake_provider.add_rule(
        "whapi_error", status=400, message="Wrong request parameters", token="token-failing"
    )
    waiting, failing = send_text(chat, "waiting"), send_text(other, "failing")
    outbox_drain()
    assert row_of(waiting).status == OutboxMessage.Status.QUEUED
    assert row_of(failing).status == OutboxMessage.Status.FAILED
    outbox_retry_now(row=row_of(waiting), actor=team.alice)
    outbox_retry_now(row=row_of(failing), actor=team.alice)
    failing.refresh_from_db()
    assert failing.status == Message.Status.PENDING
    outbox_drain()
    for message in (waiting, failing):
        message.refresh_from_db()
        assert message.status == Message.Status.SENT


def test_cancel_stops_a_queued_row_and_refuses_a_sent_one(fake_provider, team):
    chat = open_chat(provider_channel(fake_provider, workspace=team.workspace_a))
    queued = send_text(chat, "never mind")
    outbox_cancel(row=row_of(queued), actor=team.alice)
    outbox_drain()
    queued.refresh_from_db()
    assert fake_provider.sends() == []
    assert row_of(queued).status == OutboxMessage.Status.CANCELLED
    assert (queued.status, queued.error_code) == (Message.Status.FAILED, "cancelled")
    sent = send_text(chat, "gone")
    outbox_drain()
    with pytest.raises(OutboxError):
        outbox_cancel(row=row_of(sent), actor=team.alice)
    with pytest.raises(OutboxError):
        outbox_retry_now(row=row_of(sent), actor=team.alice)


def test_the_queue_depth_counts_waiting_rows(fake_provider):
    chat = open_chat(provider_channel(fake_provider))
    send_text(chat, "1")
    send_text(chat, "2")
    assert outbox_queue_depth() == 2
    outbox_drain()
    assert outbox_queue_depth() == 0


def test_a_row_of_an_unknown_type_fails_instead_of_blocking_the_queue(fake_provider):
    from outbox.services import outbox_enqueue

    channel = provider_channel(fake_provider)
    row = outbox_enqueue(
        # Not "event_delivery": that type has a sender now (outbox/subscriptions.py).
        channel=channel,
        message_type="carrier_pigeon",
        payload={"url": "https://example.com"},
    )
    outbox_drain()
    row.refresh_from_db()
    assert row.status == OutboxMessage.Status.FAILED
    assert "no sender" in row.last_error
    assert fake_provider.sends() == []


def test_looking_for_resumable_numbers_with_nothing_parked_is_two_lookups_and_no_write(fake_provider):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from outbox.services import outbox_resume_due_channels

    channel = provider_channel(fake_provider)
    send_text(open_chat(channel), "queued, not parked")
    with CaptureQueriesContext(connection) as queries:
        assert outbox_resume_due_channels() == 0
    assert len(queries.captured_queries) == 2
    assert not [q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]


def test_the_parked_rows_lookup_can_be_answered_from_its_partial_index():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # tiny test tables: make an index the only way
    plan = OutboxMessage.objects.filter(status="paused").explain()
    assert "outbox_paused" in plan, plan
