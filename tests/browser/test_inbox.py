"""The inbox in a real browser, against a real ASGI server: live updates, reconnects, the composer."""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.utils import timezone

from channels_app.models import Channel
from channels_app.services import channel_create
from inbox.models import Chat, Message
from tests.browser.conftest import LiveServer, screenshot, signed_in_context, wait_connected
from tests.conftest import Team
from tests.factories import ChatFactory, MessageFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WEBHOOK_SECRET = "browser-test-webhook-secret"


def test_an_agent_signs_in_and_lands_in_the_inbox(browser: Any, asgi_server: LiveServer, team: Team) -> None:
    context = browser.new_context(base_url=asgi_server.url, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto("/inbox/")
    page.get_by_label("Email or username").fill("bob@example.com")
    page.get_by_label("Password").fill("password123")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/inbox/")
    wait_connected(page)
    row = page.locator(f'[data-chat-id="{team.chat_a.pk}"]')
    assert row.is_visible()
    assert "Ana Customer" in row.inner_text()
    screenshot(page, "inbox-signed-in")
    context.close()


def _whapi_channel(team: Team) -> Channel:
    return channel_create(
        workspace=team.workspace_a,
        provider=Channel.Provider.WHAPI,
        display_name="Whapi support",
        phone_number="+15550009999",
        # Nothing listens here: the outbox's attempt fails fast and the test plays the provider's part.
        api_base_url="http://127.0.0.1:9",
        tokens={"api_token": "test-api-token", "webhook_secret": WEBHOOK_SECRET},
    )


def _post_whapi(server: LiveServer, channel: Channel, body: dict[str, Any]) -> None:
    response = requests.post(
        f"{server.url}/webhooks/whapi/{channel.pk}/",
        data=json.dumps(body),
        headers={"Authorization": f"Bearer {WEBHOOK_SECRET}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 200, response.text


def _inbound_text(chat_jid: str, text: str, name: str = "Ana Customer") -> dict[str, Any]:
    return {
        "messages": [
            {
                "id": f"in.{uuid.uuid4().hex}",
                "from_me": False,
                "type": "text",
                "chat_id": chat_jid,
                "timestamp": int(time.time()),
                "text": {"body": text},
                "from": chat_jid.split("@")[0],
                "from_name": name,
            }
        ],
        "event": {"type": "messages", "event": "post"},
    }


def _status(wa_message_id: str, status: str, chat_jid: str) -> dict[str, Any]:
    return {
        "statuses": [
            {
                "id": wa_message_id,
                "status": status,
                "recipient_id": chat_jid,
                "timestamp": str(int(time.time())),
            }
        ],
        "event": {"type": "statuses", "event": "post"},
    }


def test_a_webhook_post_makes_the_message_appear_in_an_open_inbox_without_reload(
    browser: Any, asgi_server: LiveServer, team: Team
) -> None:
    channel = _whapi_channel(team)
    chat = ChatFactory(
        channel=channel, wa_chat_id="4915111111111@s.whatsapp.net", contact_name="Ana Customer"
    )
    context = signed_in_context(browser, asgi_server, team.bob, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(f"/inbox/chats/{chat.pk}/")
    wait_connected(page)
    page.evaluate("window.__sameDocument = true")
    _post_whapi(asgi_server, channel, _inbound_text(chat.wa_chat_id, "Hello, is my order shipped?"))
    bubble = page.locator(".bubble-row.in", has_text="Hello, is my order shipped?")
    bubble.wait_for()
    assert bubble.count() == 1
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    # A second chat's first message moves that chat to the top of the list, badge and all.
    other = "4915122222222@s.whatsapp.net"
    _post_whapi(asgi_server, channel, _inbound_text(other, "New customer here", name="Nia New"))
    top = page.locator("#chat-list-items > li").first
    top.filter(has_text="Nia New").wait_for()
    assert top.locator(".unread-badge").inner_text().startswith("1")
    screenshot(page, "inbox-inbound-live")
    context.close()


def test_an_empty_inbox_swaps_its_empty_state_for_the_first_chat_that_arrives_live(
    browser: Any, asgi_server: LiveServer, team: Team
) -> None:
    channel = _whapi_channel(team)
    Chat.objects.filter(workspace=team.workspace_a).delete()
    context = signed_in_context(browser, asgi_server, team.bob, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto("/inbox/")
    wait_connected(page)
    empty_state = page.locator(".list-empty")
    assert empty_state.is_visible()
    _post_whapi(
        asgi_server, channel, _inbound_text("4915133333333@s.whatsapp.net", "First!", name="Fay First")
    )
    page.locator("#chat-list-items > li", has_text="Fay First").wait_for()
    assert not empty_state.is_visible()
    context.close()


def test_a_bad_number_in_the_start_chat_form_is_explained_under_it(
    browser: Any, asgi_server: LiveServer, team: Team
) -> None:
    context = signed_in_context(browser, asgi_server, team.bob, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto("/inbox/")
    wait_connected(page)
    page.get_by_text("Start a chat with a number").click()
    form = page.locator("form[action='/inbox/chats/start/']")
    form.locator("input[name=phone]").fill("12")
    form.get_by_role("button", name="Start chat").click()
    error = form.locator("#start-chat-error")
    error.filter(has_text="country code").wait_for()
    assert form.locator("input[name=phone]").input_value() == "12", "the form stays as typed"
    assert form.locator(".chat-list-region").count() == 0, "no page swapped into the form"
    context.close()


def test_a_reply_shows_at_once_and_its_ticks_advance_as_status_webhooks_arrive(
    browser: Any, asgi_server: LiveServer, team: Team, fake_provider: Any
) -> None:
    """The whole loop over real HTTP: composer → outbox → fake Whapi → its signed status webhooks → ticks."""
    from outbox.services import outbox_drain

    channel = _whapi_channel(team)
    channel.api_base_url = fake_provider.url
    channel.save(update_fields=["api_base_url"])
    fake_provider.add_callbacks(
        url=f"{asgi_server.url}/webhooks/whapi/{channel.pk}/",
        provider="whapi",
        secret=WEBHOOK_SECRET,
        statuses=["delivered", "read"],
        delay=0.5,
    )
    chat = ChatFactory(channel=channel, wa_chat_id="4915133333333@s.whatsapp.net", contact_name="Tia Ticks")
    MessageFactory(chat=chat, text="Can you help?")
    context = signed_in_context(browser, asgi_server, team.alice, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(f"/inbox/chats/{chat.pk}/")
    wait_connected(page)
    box = page.locator('textarea[name="text"]')
    box.fill("Of course! One moment.")
    box.press("Shift+Enter")
    box.type("Checking now.")
    box.press("Enter")
    # At once: the optimistic bubble with its clock, before the server has answered.
    page.locator(".bubble-row.out", has_text="Checking now.").wait_for(timeout=1000)
    bubble = page.locator(".bubble-row.out[data-message-id]", has_text="Checking now.")
    bubble.wait_for()
    assert page.locator(".bubble-row.out", has_text="Checking now.").count() == 1
    assert box.input_value() == ""
    message = Message.objects.get(chat=chat, direction=Message.Direction.OUTBOUND)
    assert message.text == "Of course! One moment.\nChecking now."
    assert bubble.get_attribute("data-message-id") == str(message.pk)
    assert bubble.get_attribute("data-status") == "pending"
    # The outbox drain sends it to the (fake) provider over HTTP; the provider then posts its statuses.
    report = outbox_drain()
    assert report.sent == 1
    (sent,) = fake_provider.sends()
    assert sent.json["body"] == "Of course! One moment.\nChecking now."
    page.locator(
        f'[data-message-id="{message.pk}"][data-status="sent"], '
        f'[data-message-id="{message.pk}"][data-status="delivered"]'
    ).first.wait_for()
    page.locator(f'[data-message-id="{message.pk}"][data-status="delivered"] .tick-delivered').wait_for()
    page.locator(f'[data-message-id="{message.pk}"][data-status="read"] .tick-read').wait_for()
    assert page.locator(f'[data-message-id="{message.pk}"]').count() == 1
    screenshot(page, "conversation-ticks")
    context.close()


def test_a_draft_and_the_pane_layout_survive_a_reload(
    browser: Any, asgi_server: LiveServer, team: Team
) -> None:
    context = signed_in_context(browser, asgi_server, team.bob, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(f"/inbox/chats/{team.chat_a.pk}/")
    wait_connected(page)
    page.locator('textarea[name="text"]').fill("Half-written answer")
    page.get_by_role("button", name="Collapse sidebar").click()
    collapsed = page.locator("#inbox").get_attribute("class")
    page.reload()
    wait_connected(page)
    assert page.locator('textarea[name="text"]').input_value() == "Half-written answer"
    assert page.locator("#inbox").get_attribute("class") == collapsed
    context.close()


def test_an_attachment_is_sent_as_media(
    browser: Any, asgi_server: LiveServer, team: Team, tmp_path: Any
) -> None:
    channel = _whapi_channel(team)
    chat = ChatFactory(channel=channel, wa_chat_id="4915144444444@s.whatsapp.net", contact_name="Fay Files")
    picture = tmp_path / "receipt.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    context = signed_in_context(browser, asgi_server, team.alice, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(f"/inbox/chats/{chat.pk}/")
    wait_connected(page)
    page.locator('input[type="file"]').set_input_files(str(picture))
    page.locator('textarea[name="text"]').fill("Here is your receipt")
    page.locator('textarea[name="text"]').press("Enter")
    deadline = time.monotonic() + 10
    while not Message.objects.filter(chat=chat, direction="out").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    message = Message.objects.get(chat=chat, direction="out")
    assert message.type == Message.Type.IMAGE
    assert message.media_file.name.endswith(".png")
    assert message.text == "Here is your receipt" or message.payload.get("caption") == "Here is your receipt"
    page.locator(f'[data-message-id="{message.pk}"]').wait_for()
    context.close()


def test_two_agents_see_each_others_assignment_and_resolution(
    browser: Any, asgi_server: LiveServer, team: Team
) -> None:
    alice = signed_in_context(
        browser, asgi_server, team.alice, viewport={"width": 1280, "height": 800}
    ).new_page()
    bob = signed_in_context(
        browser, asgi_server, team.bob, viewport={"width": 1280, "height": 800}
    ).new_page()
    chat = team.chat_a
    alice.goto(f"/inbox/chats/{chat.pk}/")
    bob.goto("/inbox/")
    wait_connected(alice)
    wait_connected(bob)
    alice.get_by_label("Assigned to").select_option(str(team.bob.pk))
    bob.locator(f'[data-chat-id="{chat.pk}"] .chat-assignee', has_text="You").wait_for()
    # Bob opens it, sees himself in the header, and resolves it: alice's header and list follow.
    bob.locator(f'[data-chat-id="{chat.pk}"] a').click()
    bob.wait_for_selector("#chat-header")
    assert bob.get_by_label("Assigned to").input_value() == str(team.bob.pk)
    bob.get_by_role("button", name="Resolve").click()
    alice.locator('#chat-header[data-status="resolved"]').wait_for()
    alice.locator(f'#chat-list-items [data-chat-id="{chat.pk}"]').wait_for(state="detached")
    screenshot(alice, "two-agents-alice")
    screenshot(bob, "two-agents-bob")
    assert Chat.objects.get(pk=chat.pk).status == Chat.Status.RESOLVED


def test_after_a_server_restart_the_page_reconnects_and_shows_missed_messages_exactly_once(
    browser: Any, asgi_server: LiveServer, team: Team
) -> None:
    from channels_app.providers.base import InboundMessage
    from inbox.services import inbound_events_apply

    chat = team.chat_a
    context = signed_in_context(browser, asgi_server, team.bob, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(f"/inbox/chats/{chat.pk}/")
    wait_connected(page)
    asgi_server.stop()
    page.locator("#connection-banner", has_text="Reconnecting").wait_for()
    screenshot(page, "reconnecting-banner")
    # While the server is down, customers keep writing (the webhook worker is elsewhere): the pushes
    # for these find no socket and are lost, so only the re-sync can show them.
    missed = []
    for i in range(3):
        event = InboundMessage(
            wa_message_id=f"missed.{i}.{uuid.uuid4().hex}",
            wa_chat_id=chat.wa_chat_id,
            from_me=False,
            type="text",
            timestamp=timezone.now(),
            text=f"sent while you were away {i}",
        )
        inbound_events_apply(channel=chat.channel, events=[event])
        missed.append(event.text)
    asgi_server.start()
    page.locator('#inbox[data-connected="true"]').wait_for(timeout=20000)
    assert page.locator("#connection-banner").is_hidden()
    for text in missed:
        page.locator(".bubble-row", has_text=text).wait_for()
    ids = page.eval_on_selector_all("[data-message-id]", "els => els.map(e => e.dataset.messageId)")
    assert len(ids) == len(set(ids))
    for text in missed:
        assert page.locator(".bubble-row", has_text=text).count() == 1
    # And the live path works again after the reconnect.
    event = InboundMessage(
        wa_message_id=f"after.{uuid.uuid4().hex}", wa_chat_id=chat.wa_chat_id, from_me=False, type="text",
        timestamp=timezone.now(), text="and one after",
    )  # fmt: skip
    inbound_events_apply(channel=chat.channel, events=[event])
    page.locator(".bubble-row", has_text="and one after").wait_for()
    assert page.locator(".bubble-row", has_text="and one after").count() == 1
    screenshot(page, "reconnected")
    context.close()


def test_a_closed_meta_window_disables_the_composer_and_offers_templates(
    browser: Any, asgi_server: LiveServer, team: Team
) -> None:
    meta = channel_create(
        workspace=team.workspace_a,
        provider=Channel.Provider.META,
        display_name="Meta sales",
        phone_number="+15550007777",
        meta_phone_number_id="1065550007777",
        tokens={"api_token": "t", "app_secret": "s", "verify_token": "v"},
    )
    chat = ChatFactory(
        channel=meta, contact_name="Mo Meta", window_expires_at=timezone.now() - timedelta(hours=2)
    )
    MessageFactory(chat=chat, text="Hi, yesterday's question", sort_at=timezone.now() - timedelta(hours=26))
    context = signed_in_context(browser, asgi_server, team.bob, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(f"/inbox/chats/{chat.pk}/")
    assert page.locator('textarea[name="text"]').is_disabled()
    assert "24 hours" in page.locator(".window-reason").inner_text()
    assert page.get_by_label("Template name").is_visible()
    assert page.get_by_label("Language").is_visible()
    screenshot(page, "meta-window-closed")
    context.close()


def test_on_a_phone_one_pane_shows_at_a_time(browser: Any, asgi_server: LiveServer, team: Team) -> None:
    MessageFactory(chat=team.chat_a, text="Hello from a small screen")
    context = signed_in_context(browser, asgi_server, team.bob, viewport={"width": 375, "height": 740})
    page = context.new_page()
    page.goto("/inbox/")
    assert page.locator("#list-pane").is_visible()
    assert page.locator("#conversation-pane").is_hidden()
    screenshot(page, "phone-list")
    page.locator(f'[data-chat-id="{team.chat_a.pk}"] a').click()
    page.locator("#conversation").wait_for()
    assert page.locator("#list-pane").is_hidden()
    assert page.locator('textarea[name="text"]').is_visible()
    screenshot(page, "phone-conversation")
    page.get_by_label("Back to chats").click()
    assert page.locator("#list-pane").is_visible()
    context.close()
