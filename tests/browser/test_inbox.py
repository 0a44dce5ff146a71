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
