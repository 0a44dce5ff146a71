"""Every page satisfies the Content-Security-Policy (no inline script), and the monitoring page with
real sandbox data, seen in a real browser."""

from __future__ import annotations

import time
from typing import Any

import pytest

from channels_app.models import Channel
from channels_app.services import channel_create
from inbox.models import Message
from tests.browser.conftest import LiveServer, screenshot, signed_in_context, wait_connected
from tests.conftest import Team

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _watch_csp(page: Any) -> list[str]:
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return violations


def test_no_page_violates_the_content_security_policy(
    browser: Any, asgi_server: LiveServer, team: Team
) -> None:
    team.alice.is_superuser = True  # sees every admin page, the beat schedule and users included
    team.alice.save(update_fields=["is_superuser"])
    anonymous = browser.new_context(base_url=asgi_server.url)
    page = anonymous.new_page()
    violations = _watch_csp(page)
    page.goto("/accounts/login/")
    # Control: an inline script injected into our page is refused, and the watcher sees it.
    page.evaluate(
        "document.body.appendChild(Object.assign(document.createElement('script'), {textContent: '1'}))"
    )
    page.wait_for_timeout(200)
    assert len(violations) == 1 and "inline script" in violations[0]
    violations.clear()
    page.goto("/api/v1/docs/")
    page.wait_for_selector(".swagger-ui", state="attached")
    anonymous.close()

    context = signed_in_context(browser, asgi_server, team.alice, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    violations += _watch_csp(page)
    for path in (
        "/workspaces/",
        "/inbox/",
        f"/inbox/chats/{team.chat_a.pk}/",
        "/monitoring/",
        "/admin/",
        f"/admin/channels_app/channel/{team.channel_a.pk}/change/",
        "/admin/inbox/chat/",
        f"/admin/inbox/message/{team.message_a.pk}/change/",
        "/admin/webhooks/webhookevent/",
        "/admin/django_celery_beat/periodictask/",
        "/api/v1/redoc/",
    ):
        page.goto(path)
        page.wait_for_load_state("networkidle")
        if path.startswith("/inbox/"):
            wait_connected(page)
    context.close()
    assert violations == []


def test_the_monitoring_page_shows_the_sandbox_loop(
    browser: Any, asgi_server: LiveServer, team: Team
) -> None:
    from inbox.services import message_send
    from outbox.services import outbox_drain

    sandbox = channel_create(
        workspace=team.workspace_a,
        provider=Channel.Provider.SANDBOX,
        display_name="Sandbox number",
        phone_number="+1 555 0100",
    )
    context = signed_in_context(browser, asgi_server, team.alice, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto("/inbox/")
    wait_connected(page)
    # A simulated customer message through the page's own control, then a reply through the outbox.
    page.get_by_text("Simulate a customer on Sandbox number").click()
    page.get_by_role("button", name="Send as customer").click()
    deadline = time.monotonic() + 10
    while (
        not Message.objects.filter(channel=sandbox, direction="in").exists() and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    inbound = Message.objects.filter(channel=sandbox, direction="in").first()
    assert inbound is not None
    message_send(
        chat=inbound.chat, sender=team.alice, client_message_id="monitoring-shot", text="Thanks, on it!"
    )
    outbox_drain()
    page.goto("/monitoring/")
    row = page.locator(f'[data-channel-id="{sandbox.pk}"]')
    assert "Connected" in row.inner_text()
    assert "never" not in row.locator("td").nth(1).inner_text()  # last inbound
    assert "never" not in row.locator("td").nth(2).inner_text()  # last successful send
    screenshot(page, "monitoring-sandbox")
    context.close()
