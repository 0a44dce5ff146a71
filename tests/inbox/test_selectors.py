"""Inbox reads: filters, search, keyset paging of chats and messages, counts, resync."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from inbox.models import Chat, Message
from inbox.selectors import (
    ChatFilters,
    chat_counts,
    chat_list,
    chat_matches,
    conversation_messages,
    decode_chat_cursor,
    messages_changed_since,
)
from tests.conftest import Team
from tests.factories import ChatFactory, MessageFactory


def test_paging_through_the_chat_list_visits_every_chat_once_newest_first(team: Team) -> None:
    now = timezone.now()
    same_time = now - timedelta(minutes=5)
    chats = [
        ChatFactory(channel=team.channel_a, last_message_at=now - timedelta(minutes=i)) for i in range(7)
    ]
    ties = [ChatFactory(channel=team.channel_a, last_message_at=same_time) for _ in range(4)]
    never = ChatFactory(channel=team.channel_a, last_message_at=None)
    seen: list[int] = []
    cursor = ""
    while True:
        page = chat_list(
            workspace=team.workspace_a, user=team.bob, filters=ChatFilters(), cursor=cursor, limit=3
        )
        seen += [c.pk for c in page.chats]
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    expected = {c.pk for c in [*chats, *ties, never, team.chat_a]}
    assert len(seen) == len(set(seen)) == len(expected) and set(seen) == expected
    assert seen[0] == never.pk  # no message yet sorts first, as Postgres sorts NULLs in DESC order


def test_each_chat_list_page_is_one_query(team: Team) -> None:
    for _ in range(5):
        ChatFactory(channel=team.channel_a)
    page = chat_list(workspace=team.workspace_a, user=team.bob, filters=ChatFilters(), limit=2)
    with CaptureQueriesContext(connection) as ctx:
        rows = chat_list(
            workspace=team.workspace_a, user=team.bob, filters=ChatFilters(), cursor=page.next_cursor, limit=2
        )
        [(c.channel.display_name, c.assignee) for c in rows.chats]
    assert len(ctx.captured_queries) == 1


def test_a_malformed_cursor_is_ignored() -> None:
    assert decode_chat_cursor("not-a-cursor!!") is None


def test_counts_are_per_status_and_view_in_one_query(team: Team) -> None:
    ChatFactory(channel=team.channel_a, assignee=team.bob)
    ChatFactory(channel=team.channel_a, status=Chat.Status.RESOLVED, assignee=team.bob)
    ChatFactory(channel=team.channel_b)
    with CaptureQueriesContext(connection) as ctx:
        counts = chat_counts(workspace=team.workspace_a, user=team.bob)
    assert len(ctx.captured_queries) == 1
    assert counts["open"] == {"all": 2, "mine": 1, "unassigned": 1}
    assert counts["resolved"] == {"all": 1, "mine": 1, "unassigned": 0}
    assert counts["pending"] == {"all": 0, "mine": 0, "unassigned": 0}


def test_chat_matches_follows_the_same_rules_as_the_list(team: Team) -> None:
    mine = ChatFactory(channel=team.channel_a, assignee=team.bob, contact_name="Marta")
    assert chat_matches(chat=mine, user=team.bob, filters=ChatFilters(view="mine"))
    assert not chat_matches(chat=mine, user=team.alice, filters=ChatFilters(view="mine"))
    assert not chat_matches(chat=mine, user=team.bob, filters=ChatFilters(view="unassigned"))
    assert not chat_matches(chat=mine, user=team.bob, filters=ChatFilters(status="resolved"))
    assert chat_matches(chat=mine, user=team.bob, filters=ChatFilters(q="mart"))
    assert not chat_matches(chat=mine, user=team.bob, filters=ChatFilters(q="zzz"))


def test_filters_from_bad_params_fall_back_to_open_and_all() -> None:
    assert ChatFilters.from_params({"view": "evil", "status": "nope", "q": "  x  "}) == ChatFilters(
        "all", "open", "x"
    )
    # The page's websocket messages are any JSON: values that are not strings never crash the consumer.
    assert ChatFilters.from_params({"view": ["mine"], "status": {"a": 1}, "q": 42}) == ChatFilters(
        "all", "open", "42"
    )


def test_a_search_from_the_websocket_with_a_nul_character_is_searched_without_it(team: Team) -> None:
    # The consumer builds filters from the page's websocket messages (pages' query strings are refused
    # with a 400 by config.nul_guard); Postgres refuses NUL in text, so the search was a database error.
    filters = ChatFilters.from_params({"q": "An\x00a"})
    assert filters.q == "Ana"
    assert chat_matches(chat=team.chat_a, user=team.alice, filters=filters)


def test_conversation_pages_walk_back_by_keyset(team: Team) -> None:
    base = timezone.now() - timedelta(hours=1)
    same = base + timedelta(seconds=30)
    messages = [MessageFactory(chat=team.chat_a, sort_at=base + timedelta(seconds=i)) for i in range(30)]
    messages += [MessageFactory(chat=team.chat_a, sort_at=same) for _ in range(5)]
    Message.objects.filter(pk=team.message_a.pk).delete()
    ordered = sorted(messages, key=lambda m: (m.sort_at, m.pk))
    latest = conversation_messages(chat=team.chat_a, limit=10)
    assert [m.pk for m in latest.messages] == [m.pk for m in ordered[-10:]] and latest.has_older
    walked = list(latest.messages)
    page = latest
    while page.has_older:
        with CaptureQueriesContext(connection) as ctx:
            page = conversation_messages(chat=team.chat_a, before=page.messages[0].pk, limit=10)
        assert len(ctx.captured_queries) == 3  # anchor, page, reactions
        walked = page.messages + walked
    assert [m.pk for m in walked] == [m.pk for m in ordered]


def test_before_a_message_of_another_chat_gives_nothing(team: Team) -> None:
    page = conversation_messages(chat=team.chat_a, before=team.message_b.pk)
    assert page.messages == [] and not page.has_older


def test_resync_returns_messages_changed_since_the_token_with_a_margin(team: Team) -> None:
    token = timezone.now()
    old = MessageFactory(chat=team.chat_a)
    Message.objects.filter(pk__in=[old.pk, team.message_a.pk]).update(
        updated_at=token - timedelta(minutes=10)
    )
    just_before = MessageFactory(chat=team.chat_a)
    Message.objects.filter(pk=just_before.pk).update(updated_at=token - timedelta(seconds=3))
    after = MessageFactory(chat=team.chat_a)
    changed = messages_changed_since(chat=team.chat_a, since=token)
    assert changed is not None
    assert [m.pk for m in changed] == [just_before.pk, after.pk]
