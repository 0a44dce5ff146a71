"""The inbox pages, partials and actions: alice (admin) and bob (agent) work, charlie gets 404."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from channels_app.models import Channel
from inbox.models import Chat, Message
from tenants.models import AuditLog
from tests.conftest import Team, client_for
from tests.factories import ChannelFactory, ChatFactory, MessageFactory

HX = {"HTTP_HX_REQUEST": "true"}


def hx(target: str) -> dict[str, str]:
    return {**HX, "HTTP_HX_TARGET": target}


# ---------------------------------------------------------------- the inbox page


def test_the_inbox_page_shows_the_three_panes_and_the_workspaces_open_chats(
    alice_client: Client, team: Team
) -> None:
    response = alice_client.get("/inbox/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="sidebar"' in html and 'id="list-pane"' in html and 'id="conversation-pane"' in html
    assert f'data-chat-id="{team.chat_a.pk}"' in html
    assert "Ana Customer" in html
    assert "Ben Customer" not in html
    assert 'ws-connect="/ws/inbox/"' in html


def test_the_inbox_page_loads_htmx_and_its_ws_extension_from_static_files_not_a_cdn(
    alice_client: Client,
) -> None:
    html = alice_client.get("/inbox/").content.decode()
    assert "/static/django_htmx/htmx-2.min.js" in html
    assert "/static/django_htmx/ext/hx-ws-2.min.js" in html
    assert "/static/js/inbox.js" in html
    assert "https://" not in re.sub(r'xmlns="[^"]*"', "", html)


def test_the_inbox_page_has_no_inline_script_or_event_handler(alice_client: Client, team: Team) -> None:
    html = alice_client.get(f"/inbox/chats/{team.chat_a.pk}/").content.decode()
    for script in re.findall(r"<script[^>]*>(.*?)</script>", html, flags=re.S):
        assert script.strip() == ""
    assert not re.search(r"\son[a-z]+=", html)


def test_an_agent_sees_the_inbox_too(bob_client: Client, team: Team) -> None:
    response = bob_client.get("/inbox/")
    assert response.status_code == 200
    assert f'data-chat-id="{team.chat_a.pk}"' in response.content.decode()


def test_a_signed_out_visitor_is_sent_to_sign_in(client: Client, team: Team) -> None:
    response = client.get("/inbox/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_the_page_uses_the_workspace_theme_colour(alice_client: Client, team: Team) -> None:
    team.workspace_a.theme_primary_color = "#7c3aed"
    team.workspace_a.theme_mode = "dark"
    team.workspace_a.save()
    html = alice_client.get("/inbox/").content.decode()
    assert "--primary: #7c3aed" in html
    assert 'data-theme="dark"' in html


def test_the_chat_list_is_newest_first(alice_client: Client, team: Team) -> None:
    older = ChatFactory(
        channel=team.channel_a, contact_name="Older", last_message_at=timezone.now() - timedelta(days=2)
    )
    newer = ChatFactory(
        channel=team.channel_a, contact_name="Newer", last_message_at=timezone.now() + timedelta(minutes=1)
    )
    html = alice_client.get("/inbox/").content.decode()
    assert html.index(f'data-chat-id="{newer.pk}"') < html.index(f'data-chat-id="{team.chat_a.pk}"')
    assert html.index(f'data-chat-id="{team.chat_a.pk}"') < html.index(f'data-chat-id="{older.pk}"')


def test_the_views_filter_mine_and_unassigned(bob_client: Client, team: Team) -> None:
    mine = ChatFactory(channel=team.channel_a, contact_name="Bobs chat", assignee=team.bob)
    theirs = ChatFactory(channel=team.channel_a, contact_name="Alices chat", assignee=team.alice)
    mine_html = bob_client.get("/inbox/?view=mine").content.decode()
    assert f'data-chat-id="{mine.pk}"' in mine_html
    assert f'data-chat-id="{theirs.pk}"' not in mine_html
    unassigned_html = bob_client.get("/inbox/?view=unassigned").content.decode()
    assert f'data-chat-id="{team.chat_a.pk}"' in unassigned_html
    assert f'data-chat-id="{mine.pk}"' not in unassigned_html


def test_resolved_chats_are_listed_under_resolved_only(alice_client: Client, team: Team) -> None:
    done = ChatFactory(channel=team.channel_a, contact_name="Done", status=Chat.Status.RESOLVED)
    assert f'data-chat-id="{done.pk}"' not in alice_client.get("/inbox/").content.decode()
    assert f'data-chat-id="{done.pk}"' in alice_client.get("/inbox/?status=resolved").content.decode()


def test_search_finds_chats_by_name_number_and_message_text(alice_client: Client, team: Team) -> None:
    by_phone = ChatFactory(channel=team.channel_a, contact_name="Zed", contact_phone="+4915112345678")
    by_text = ChatFactory(channel=team.channel_a, contact_name="Yan")
    MessageFactory(chat=by_text, text="Where is my parcel?")
    by_name = alice_client.get("/inbox/?q=ana", **hx("chat-list-region")).content.decode()
    assert f'data-chat-id="{team.chat_a.pk}"' in by_name and f'data-chat-id="{by_phone.pk}"' not in by_name
    phone = alice_client.get("/inbox/?q=15112345", **hx("chat-list-region")).content.decode()
    assert f'data-chat-id="{by_phone.pk}"' in phone and f'data-chat-id="{team.chat_a.pk}"' not in phone
    text = alice_client.get("/inbox/?q=parcel", **hx("chat-list-region")).content.decode()
    assert f'data-chat-id="{by_text.pk}"' in text and f'data-chat-id="{by_phone.pk}"' not in text


def test_search_never_finds_another_workspaces_chats(charlie_client: Client, team: Team) -> None:
    html = charlie_client.get("/inbox/?q=ana").content.decode()
    assert f'data-chat-id="{team.chat_a.pk}"' not in html


def test_an_htmx_search_renders_only_the_list_region(alice_client: Client, team: Team) -> None:
    html = alice_client.get("/inbox/?q=ana", **hx("chat-list-region")).content.decode()
    assert html.lstrip().startswith('<div id="chat-list-region"')
    assert "<html" not in html


def test_an_htmx_filter_switch_renders_the_list_pane_and_the_filter_links_out_of_band(
    alice_client: Client, team: Team
) -> None:
    html = alice_client.get("/inbox/?view=mine", **hx("list-pane")).content.decode()
    assert "<html" not in html
    assert 'id="chat-list-region"' in html
    assert re.search(r'<nav id="chat-filters"[^>]*hx-swap-oob="true"', html)


def test_the_sidebar_counts_chats_per_status_and_view(alice_client: Client, team: Team) -> None:
    ChatFactory(channel=team.channel_a, assignee=team.alice)
    ChatFactory(channel=team.channel_a, status=Chat.Status.PENDING)
    html = alice_client.get("/inbox/").content.decode()
    counts = dict(
        re.findall(r'data-filter="(\w+)".*?<span class="filter-count"[^>]*>(\d+)</span>', html, flags=re.S)
    )
    assert counts == {
        "open": "2",
        "pending": "1",
        "resolved": "0",
        "all": "2",
        "mine": "1",
        "unassigned": "1",
    }


def test_the_chat_list_pages_with_a_cursor(alice_client: Client, team: Team) -> None:
    base = timezone.now() - timedelta(hours=1)
    chats = [
        ChatFactory(channel=team.channel_a, last_message_at=base - timedelta(minutes=i)) for i in range(45)
    ]
    first = alice_client.get("/inbox/").content.decode()
    cursor = re.search(r'hx-get="/inbox/chats/\?[^"]*cursor=([^"&]+)"', first)
    assert cursor is not None
    second = alice_client.get(
        f"/inbox/chats/?view=all&status=open&cursor={cursor.group(1)}", **hx("chat-list-more")
    )
    html = second.content.decode()
    assert 'hx-swap-oob="beforeend:#chat-list-items"' in html
    shown_first = set(re.findall(r'data-chat-id="(\d+)"', first))
    shown_second = set(re.findall(r'data-chat-id="(\d+)"', html))
    assert shown_first.isdisjoint(shown_second)
    assert {str(c.pk) for c in chats} | {str(team.chat_a.pk)} == shown_first | shown_second


def test_the_chat_list_page_without_htmx_is_a_full_page(alice_client: Client, team: Team) -> None:
    response = alice_client.get("/inbox/chats/")
    assert response.status_code == 200
    assert "<html" in response.content.decode()


# ---------------------------------------------------------------- the conversation


def test_the_conversation_page_shows_the_messages_and_the_composer(alice_client: Client, team: Team) -> None:
    response = alice_client.get(f"/inbox/chats/{team.chat_a.pk}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert f'data-message-id="{team.message_a.pk}"' in html
    assert 'data-status="received"' in html
    assert '<textarea id="composer-text' in html and 'name="text"' in html
    assert team.message_a.text in html


def test_an_htmx_conversation_request_renders_only_the_conversation_partial(
    alice_client: Client, team: Team
) -> None:
    html = alice_client.get(f"/inbox/chats/{team.chat_a.pk}/", **hx("conversation-pane")).content.decode()
    assert html.lstrip().startswith('<div id="conversation"')
    assert 'id="sidebar"' not in html


def test_opening_a_chat_marks_it_read(bob_client: Client, team: Team) -> None:
    Chat.objects.filter(pk=team.chat_a.pk).update(unread_count=3)
    bob_client.get(f"/inbox/chats/{team.chat_a.pk}/")
    team.chat_a.refresh_from_db()
    assert team.chat_a.unread_count == 0
    assert team.chat_a.last_read_at is not None


def test_messages_are_grouped_by_day_with_ticks_media_markers_reactions_and_quotes(
    alice_client: Client, team: Team
) -> None:
    chat = team.chat_a
    yesterday = timezone.now() - timedelta(days=1)
    quoted = MessageFactory(chat=chat, text="Original question", sort_at=yesterday)
    MessageFactory(
        chat=chat,
        direction=Message.Direction.OUTBOUND,
        status=Message.Status.READ,
        text="Answer",
        reply_to=quoted,
    )
    MessageFactory(
        chat=chat, direction=Message.Direction.OUTBOUND, status=Message.Status.DELIVERED, text="Two ticks"
    )
    MessageFactory(
        chat=chat, direction=Message.Direction.OUTBOUND, status=Message.Status.PENDING, text="Clock"
    )
    MessageFactory(
        chat=chat,
        direction=Message.Direction.OUTBOUND,
        status=Message.Status.FAILED,
        text="Nope",
        error_message="Recipient is not on WhatsApp",
    )
    MessageFactory(chat=chat, type=Message.Type.IMAGE, text="", media_url="https://cdn.example.test/a.jpg")
    MessageFactory(
        chat=chat,
        type=Message.Type.DOCUMENT,
        text="",
        media_url="https://cdn.example.test/b.pdf",
        media_filename="b.pdf",
    )
    MessageFactory(chat=chat, text="Changed", edited_at=timezone.now())
    MessageFactory(chat=chat, text="secret", deleted_at=timezone.now())
    liked = MessageFactory(chat=chat, text="Thanks")
    liked.reactions.create(reactor_wa_id="me", emoji="👍", reacted_at=timezone.now())
    html = alice_client.get(f"/inbox/chats/{chat.pk}/").content.decode()
    assert html.count('class="day-divider"') == 2
    assert "Yesterday" in html and "Today" in html
    assert (
        "tick-read" in html and "tick-delivered" in html and "tick-pending" in html and "tick-failed" in html
    )
    assert "Recipient is not on WhatsApp" in html and "/inbox/messages/" in html and "Retry" in html
    assert '<img src="https://cdn.example.test/a.jpg"' in html
    assert 'href="https://cdn.example.test/b.pdf" download' in html
    assert "Edited" in html
    assert "This message was deleted" in html and "secret" not in html
    assert "👍" in html
    assert 'class="quoted"' in html and "Original question" in html


def test_older_messages_load_before_a_message_without_offset(alice_client: Client, team: Team) -> None:
    base = timezone.now() - timedelta(hours=5)
    messages = [MessageFactory(chat=team.chat_a, sort_at=base + timedelta(seconds=i)) for i in range(60)]
    page = alice_client.get(f"/inbox/chats/{team.chat_a.pk}/").content.decode()
    before = re.search(r"/messages/\?before=(\d+)", page)
    assert before is not None
    older = alice_client.get(
        f"/inbox/chats/{team.chat_a.pk}/messages/?before={before.group(1)}", **hx("older-sentinel")
    )
    html = older.content.decode()
    assert 'hx-swap-oob="afterbegin:#message-list"' in html
    ids = [int(i) for i in re.findall(r'data-message-id="(\d+)"', html)]
    assert ids == [m.pk for m in messages[:11]]


def test_a_meta_chat_with_a_closed_window_disables_the_text_box_and_offers_templates(
    alice_client: Client, team: Team
) -> None:
    meta = ChannelFactory(
        workspace=team.workspace_a, provider=Channel.Provider.META, meta_phone_number_id="123"
    )
    chat = ChatFactory(channel=meta, window_expires_at=timezone.now() - timedelta(minutes=1))
    html = alice_client.get(f"/inbox/chats/{chat.pk}/").content.decode()
    assert re.search(r'<textarea[^>]*name="text"[^>]*disabled', html)
    assert "24 hours" in html
    assert (
        'name="template_name"' in html
        and 'name="template_language"' in html
        and 'name="template_param"' in html
    )


def test_a_meta_chat_with_an_open_window_has_a_working_text_box(alice_client: Client, team: Team) -> None:
    meta = ChannelFactory(
        workspace=team.workspace_a, provider=Channel.Provider.META, meta_phone_number_id="124"
    )
    chat = ChatFactory(channel=meta, window_expires_at=timezone.now() + timedelta(hours=3))
    html = alice_client.get(f"/inbox/chats/{chat.pk}/").content.decode()
    assert not re.search(r'<textarea[^>]*name="text"[^>]*disabled', html)
    assert 'name="template_name"' not in html


# ---------------------------------------------------------------- actions


def test_assigning_a_chat_from_the_header_updates_it_and_returns_the_header(
    bob_client: Client, team: Team
) -> None:
    response = bob_client.post(
        f"/inbox/chats/{team.chat_a.pk}/assign/", {"agent_id": team.alice.pk}, **hx("chat-header")
    )
    assert response.status_code == 200
    assert response.content.decode().lstrip().startswith('<header id="chat-header"')
    team.chat_a.refresh_from_db()
    assert team.chat_a.assignee == team.alice
    assert AuditLog.objects.filter(action="chat.assigned", target_id=str(team.chat_a.pk)).exists()


def test_assign_me_and_unassign(bob_client: Client, team: Team) -> None:
    bob_client.post(f"/inbox/chats/{team.chat_a.pk}/assign/", {"agent_id": "me"})
    team.chat_a.refresh_from_db()
    assert team.chat_a.assignee == team.bob
    response = bob_client.post(f"/inbox/chats/{team.chat_a.pk}/assign/", {"agent_id": ""})
    assert response.status_code == 302 and response["Location"] == f"/inbox/chats/{team.chat_a.pk}/"
    team.chat_a.refresh_from_db()
    assert team.chat_a.assignee is None


def test_a_chat_cannot_be_assigned_to_someone_outside_the_workspace(alice_client: Client, team: Team) -> None:
    response = alice_client.post(f"/inbox/chats/{team.chat_a.pk}/assign/", {"agent_id": team.charlie.pk})
    assert response.status_code == 404
    team.chat_a.refresh_from_db()
    assert team.chat_a.assignee is None


def test_resolve_and_reopen_from_the_header(alice_client: Client, team: Team) -> None:
    alice_client.post(f"/inbox/chats/{team.chat_a.pk}/status/", {"status": "resolved"})
    team.chat_a.refresh_from_db()
    assert team.chat_a.status == Chat.Status.RESOLVED
    html = alice_client.post(
        f"/inbox/chats/{team.chat_a.pk}/status/", {"status": "open"}, **hx("chat-header")
    ).content.decode()
    team.chat_a.refresh_from_db()
    assert team.chat_a.status == Chat.Status.OPEN
    assert "Resolve" in html


def test_an_unknown_status_is_refused(alice_client: Client, team: Team) -> None:
    assert alice_client.post(f"/inbox/chats/{team.chat_a.pk}/status/", {"status": "gone"}).status_code == 404


def test_starting_a_chat_with_a_number_opens_it(bob_client: Client, team: Team) -> None:
    response = bob_client.post(
        "/inbox/chats/start/", {"channel_id": str(team.channel_a.pk), "phone": "+49 151 2345 6789"}
    )
    chat = Chat.objects.get(channel=team.channel_a, contact_phone="+4915123456789")
    assert response.status_code == 302 and response["Location"] == f"/inbox/chats/{chat.pk}/"
    assert chat.assignee == team.bob


def test_a_bad_number_is_explained(bob_client: Client, team: Team) -> None:
    response = bob_client.post(
        "/inbox/chats/start/", {"channel_id": str(team.channel_a.pk), "phone": "12"}, follow=True
    )
    assert "country code" in response.content.decode()


def test_a_bad_number_from_the_sidebar_form_is_explained_under_the_form(
    bob_client: Client, team: Team
) -> None:
    response = bob_client.post(
        "/inbox/chats/start/", {"channel_id": str(team.channel_a.pk), "phone": "12"}, **HX
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="start-chat-error"' in html and 'hx-swap-oob="true"' in html and "country code" in html
    assert "chat-list-region" not in html, "only the error, not a page to swap into the form"


def test_a_refused_retry_is_explained_above_the_composer_at_once(bob_client: Client, team: Team) -> None:
    from channels_app.models import Channel

    failed = MessageFactory(chat=team.chat_a, direction="out", status="failed", error_message="Bad request")
    Channel.objects.filter(pk=team.channel_a.pk).update(status=Channel.Status.DISCONNECTED)
    response = bob_client.post(f"/inbox/messages/{failed.pk}/retry/", **HX)
    html = response.content.decode()
    assert response.status_code == 200
    assert f'data-message-id="{failed.pk}"' in html, "the bubble, still failed"
    assert 'id="composer-error"' in html and "is disconnected" in html
    failed.refresh_from_db()
    assert failed.status == "failed"


def test_mark_read_clears_the_badge(bob_client: Client, team: Team) -> None:
    Chat.objects.filter(pk=team.chat_a.pk).update(unread_count=2)
    assert bob_client.post(f"/inbox/chats/{team.chat_a.pk}/read/", **HX).status_code == 204
    team.chat_a.refresh_from_db()
    assert team.chat_a.unread_count == 0


def test_pages_only_answer_the_right_http_methods(alice_client: Client, team: Team) -> None:
    assert alice_client.get(f"/inbox/chats/{team.chat_a.pk}/assign/").status_code == 405
    assert alice_client.post("/inbox/").status_code == 405


# ---------------------------------------------------------------- charlie gets 404 everywhere


def charlie_requests(team: Team) -> list[tuple[str, str, dict[str, Any]]]:
    chat, message, channel = team.chat_a, team.message_a, team.channel_a
    return [
        ("get", f"/inbox/chats/{chat.pk}/", {}),
        ("get", f"/inbox/chats/{chat.pk}/messages/?before={message.pk}", {}),
        ("post", f"/inbox/chats/{chat.pk}/send/", {"text": "hi", "client_message_id": "c-1"}),
        ("post", f"/inbox/chats/{chat.pk}/assign/", {"agent_id": "me"}),
        ("post", f"/inbox/chats/{chat.pk}/status/", {"status": "resolved"}),
        ("post", f"/inbox/chats/{chat.pk}/read/", {}),
        ("post", f"/inbox/messages/{message.pk}/retry/", {}),
        ("post", "/inbox/chats/start/", {"channel_id": str(channel.pk), "phone": "+4915123456789"}),
        ("post", f"/inbox/channels/{channel.pk}/simulate/", {"text": "hi"}),
    ]


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
def test_charlie_gets_404_for_every_page_partial_and_action_on_workspace_a(
    charlie_client: Client, team: Team, htmx: bool
) -> None:
    extra = HX if htmx else {}
    for method, url, data in charlie_requests(team):
        response = getattr(charlie_client, method)(url, data, **extra)
        assert response.status_code == 404, (method, url, response.status_code)
    team.chat_a.refresh_from_db()
    assert team.chat_a.assignee is None and team.chat_a.status == Chat.Status.OPEN
    assert not Message.objects.filter(chat=team.chat_a, client_message_id="c-1").exists()
    assert not Chat.objects.filter(contact_phone="+4915123456789").exists()


def test_a_member_of_both_workspaces_gets_404_for_a_chat_of_the_workspace_not_chosen(team: Team) -> None:
    from tests.factories import MembershipFactory

    MembershipFactory(workspace=team.workspace_a, user=team.charlie)
    client = client_for(team.charlie)
    session = client.session
    session["workspace_id"] = str(team.workspace_b.pk)
    session.save()
    assert client.get(f"/inbox/chats/{team.chat_a.pk}/").status_code == 404
    assert client.get(f"/inbox/chats/{team.chat_b.pk}/").status_code == 200


def test_a_suspended_workspace_shows_the_suspended_page(alice_client: Client, team: Team) -> None:
    team.workspace_a.status = "suspended"
    team.workspace_a.save()
    assert alice_client.get("/inbox/").status_code == 403


# ---------------------------------------------------------------- query counts


def _queries(client: Client, url: str, **extra: Any) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, **extra)
    assert response.status_code == 200
    return len(ctx.captured_queries)


def _seed_chats(team: Team, n: int) -> None:
    base = timezone.now()
    channel = ChannelFactory(workspace=team.workspace_a)
    for i in range(n):
        chat = ChatFactory(
            channel=channel if i % 2 else team.channel_a,
            assignee=team.bob if i % 3 == 0 else None,
            last_message_at=base - timedelta(seconds=i),
            unread_count=i % 4,
            last_message_preview=f"preview {i}",
        )
        if i % 10 == 0:
            MessageFactory(chat=chat)


@pytest.mark.parametrize("url", ["/inbox/", "/inbox/chats/", "/inbox/?view=mine", "/inbox/?q=preview"])
def test_the_inbox_page_and_chat_list_use_the_same_number_of_queries_for_10_and_200_chats(
    url: str, team: Team
) -> None:
    client = client_for(team.bob)
    _seed_chats(team, 10)
    with_10 = _queries(client, url)
    with_10_htmx = _queries(client, url, **hx("chat-list-region"))
    _seed_chats(team, 190)
    assert _queries(client, url) == with_10
    assert _queries(client, url, **hx("chat-list-region")) == with_10_htmx


def test_the_conversation_uses_the_same_number_of_queries_for_few_and_many_messages(team: Team) -> None:
    client = client_for(team.alice)
    client.get(f"/inbox/chats/{team.chat_a.pk}/")  # the first visit marks the chat read: a write, not a read
    for _ in range(5):
        MessageFactory(chat=team.chat_a).reactions.create(
            reactor_wa_id="x", emoji="❤", reacted_at=timezone.now()
        )
    few = _queries(client, f"/inbox/chats/{team.chat_a.pk}/")
    for _ in range(80):
        MessageFactory(chat=team.chat_a).reactions.create(
            reactor_wa_id="x", emoji="❤", reacted_at=timezone.now()
        )
    assert _queries(client, f"/inbox/chats/{team.chat_a.pk}/") == few


def test_admins_get_links_to_monitoring_admin_and_the_api_and_agents_do_not(team, alice_client, bob_client):
    assert 'href="/monitoring/"' in alice_client.get("/inbox/").content.decode()
    assert 'href="/monitoring/"' not in bob_client.get("/inbox/").content.decode()
