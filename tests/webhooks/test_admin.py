"""Django admin for raw webhook events: scoped to the admin's workspace, with a replay action."""

from __future__ import annotations

import pytest

from inbox.models import Message
from tests.webhooks.helpers import store
from tests.webhooks.samples import fixture_bytes
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/webhooks/webhookevent/"


@pytest.fixture
def dead_event(whapi_channel):
    event = store(whapi_channel, fixture_bytes("whapi", "whapi_incoming_text.json"))
    WebhookEvent.objects.filter(pk=event.pk).update(status="dead", attempts=5, last_error="it broke")
    return event


def test_alice_replays_a_dead_event_from_the_admin(
    alice_client, dead_event, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(
            CHANGELIST, {"action": "replay_events", "_selected_action": [dead_event.pk]}
        )
    assert response.status_code == 302
    dead_event.refresh_from_db()
    assert dead_event.status == "processed"
    assert Message.objects.filter(wa_message_id="p.w30M7fgwWD4XwHu.g4CA-gBgTwl0rVw").count() == 1
    from tenants.models import AuditLog

    entry = AuditLog.objects.get(action="webhook.replayed")
    assert entry.data["event_ids"] == [dead_event.pk] and entry.data["count"] == 1


def test_alice_sees_her_workspaces_events_and_their_body(alice_client, dead_event):
    listing = alice_client.get(CHANGELIST)
    assert listing.status_code == 200
    assert f"/admin/webhooks/webhookevent/{dead_event.pk}/change/" in listing.content.decode()
    detail = alice_client.get(f"/admin/webhooks/webhookevent/{dead_event.pk}/change/")
    assert detail.status_code == 200
    assert "Hello world" in detail.content.decode()


def test_charlie_cannot_see_workspace_a_events(charlie_client, dead_event):
    listing = charlie_client.get(CHANGELIST)
    assert listing.status_code == 200
    assert f"/admin/webhooks/webhookevent/{dead_event.pk}/change/" not in listing.content.decode()
    assert charlie_client.get(f"/admin/webhooks/webhookevent/{dead_event.pk}/change/").status_code == 404


def test_charlie_cannot_replay_workspace_a_events(
    charlie_client, dead_event, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        charlie_client.post(CHANGELIST, {"action": "replay_events", "_selected_action": [dead_event.pk]})
    dead_event.refresh_from_db()
    assert (dead_event.status, dead_event.attempts) == ("dead", 5)
    assert not Message.objects.filter(wa_message_id="p.w30M7fgwWD4XwHu.g4CA-gBgTwl0rVw").exists()


def test_bob_an_agent_has_no_webhook_admin(bob_client, dead_event):
    response = bob_client.get(CHANGELIST)
    assert response.status_code in (302, 403)


def test_the_admin_never_shows_a_stored_authorization_header(alice_client, whapi_channel):
    from tests.webhooks.conftest import WHAPI_SECRET, post_whapi

    assert post_whapi(whapi_channel, fixture_bytes("whapi", "whapi_incoming_text.json")).status_code == 200
    event = WebhookEvent.objects.get()
    page = alice_client.get(f"/admin/webhooks/webhookevent/{event.pk}/change/").content.decode()
    assert WHAPI_SECRET not in page
