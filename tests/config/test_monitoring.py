from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from outbox.models import OutboxMessage
from tenants.models import AuditLog
from tests.factories import UserFactory
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def troubled(team):
    now = timezone.now()
    dead_a = WebhookEvent.objects.create(
        provider="whapi",
        channel=team.channel_a,
        raw_body=b'{"messages": []}',
        status="dead",
        attempts=5,
        last_error="KeyError: 'chat_id'",
    )
    dead_b = WebhookEvent.objects.create(
        provider="meta",
        channel=team.channel_b,
        raw_body=b"{}",
        status="dead",
        attempts=5,
        last_error="beta error",
    )
    stuck = WebhookEvent.objects.create(
        provider="whapi",
        channel=team.channel_a,
        raw_body=b"{}",
        status="processing",
        lease_expires_at=now - timedelta(minutes=1),
    )
    OutboxMessage.objects.create(
        channel=team.channel_a,
        chat=team.chat_a,
        message_type="text",
        payload={},
        status="sending",
        next_attempt_at=now,
        lease_expires_at=now - timedelta(seconds=30),
    )
    OutboxMessage.objects.create(
        channel=team.channel_a,
        chat=team.chat_a,
        message_type="text",
        payload={},
        status="failed",
        next_attempt_at=now,
        last_error="131047: outside the 24-hour window: send a template",
    )
    return dead_a, dead_b, stuck


def test_a_workspace_admin_sees_her_numbers_dead_letters_and_stuck_items(
    team, troubled, alice_client: Client
) -> None:
    page = alice_client.get("/monitoring/").content.decode()
    assert "Alpha support" in page and "Beta support" not in page
    assert f'data-event-id="{troubled[0].pk}"' in page
    assert f'data-event-id="{troubled[1].pk}"' not in page and "beta error" not in page
    assert f"Webhook event #{troubled[2].pk}" in page
    assert "sending past its lease" in page
    assert "outside the 24-hour window" in page
    assert 'data-metric="dead-events">1<' in page


def test_agents_and_strangers_get_404(team, bob_client: Client, client: Client) -> None:
    assert bob_client.get("/monitoring/").status_code == 404
    assert client.get("/monitoring/").status_code == 302  # to sign-in


def test_charlie_sees_only_beta(team, troubled, charlie_client: Client) -> None:
    page = charlie_client.get("/monitoring/").content.decode()
    assert "Beta support" in page and "Alpha support" not in page
    assert "KeyError" not in page


def test_a_superuser_sees_every_workspace(team, troubled) -> None:
    root = UserFactory(username="root@example.com", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(root)
    page = client.get("/monitoring/").content.decode()
    assert "Alpha support" in page and "Beta support" in page


def test_replay_requeues_selected_dead_events_and_audits(
    team, troubled, alice_client: Client, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    kicked: list[str] = []
    monkeypatch.setattr("webhooks.tasks.webhook_events_kick", lambda: kicked.append("drain"))
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post("/monitoring/replay/", {"event_id": [str(troubled[0].pk)]})
    assert response.status_code == 302
    troubled[0].refresh_from_db()
    assert troubled[0].status == WebhookEvent.Status.PENDING and troubled[0].attempts == 0
    assert kicked == ["drain"]
    assert AuditLog.objects.filter(action="webhook.replayed", actor=team.alice).exists()


def test_charlie_cannot_replay_workspace_a_events(team, troubled, charlie_client: Client) -> None:
    charlie_client.post("/monitoring/replay/", {"event_id": [str(troubled[0].pk)]})
    troubled[0].refresh_from_db()
    assert troubled[0].status == WebhookEvent.Status.DEAD
