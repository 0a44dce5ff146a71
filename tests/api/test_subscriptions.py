"""/api/v1/subscriptions/ (admins), and which changes queue a delivery."""

from __future__ import annotations

import pytest
from django.db import transaction

from channels_app import crypto
from outbox.models import EventSubscription, OutboxMessage
from outbox.subscriptions import EVENT_DELIVERY, subscription_create, subscription_events_emit
from tests.api.conftest import assert_error, data_of

pytestmark = pytest.mark.django_db

NEW = {"url": "https://crm.example.com/hooks/wa", "event_types": ["message.created", "chat.updated"]}


def deliveries(**filters):
    return list(OutboxMessage.objects.filter(message_type=EVENT_DELIVERY, **filters).order_by("id"))


def test_an_admin_creates_a_subscription_and_sees_its_secret_once(alice_api, team):
    response = alice_api.post("/subscriptions/", {**NEW, "description": "CRM"})
    created = data_of(response, 201)
    assert created["secret"].startswith("whsec_")
    subscription = EventSubscription.objects.get(pk=created["id"])
    assert subscription.workspace == team.workspace_a
    assert created["secret"] not in subscription.encrypted_secret
    assert crypto.decrypt(subscription.encrypted_secret) == created["secret"]
    # Never again: not in the detail, not in the list.
    assert "secret" not in data_of(alice_api.get(f"/subscriptions/{subscription.pk}/"))
    listed = alice_api.get("/subscriptions/")
    assert created["secret"] not in listed.content.decode()
    assert [s["id"] for s in data_of(listed)] == [subscription.pk]


def test_creating_a_subscription_validates_url_and_event_types(alice_api):
    error = assert_error(
        alice_api.post("/subscriptions/", {"url": "ftp://x", "event_types": ["message.deleted"]}), 400
    )
    assert {"url", "event_types"} <= set(error["fields"])
    error = assert_error(
        alice_api.post("/subscriptions/", {"url": "https://x.example.com", "event_types": []}), 400
    )
    assert "event_types" in error["fields"]


def test_agents_cannot_manage_subscriptions(bob_api, team):
    issued = subscription_create(workspace=team.workspace_a, url=NEW["url"], event_types=NEW["event_types"])
    pk = issued.subscription.pk
    assert_error(bob_api.get("/subscriptions/"), 403)
    assert_error(bob_api.post("/subscriptions/", NEW), 403)
    assert_error(bob_api.get(f"/subscriptions/{pk}/"), 403)
    assert_error(bob_api.patch(f"/subscriptions/{pk}/", {"active": False}), 403)
    assert_error(bob_api.delete(f"/subscriptions/{pk}/"), 403)
    assert_error(bob_api.post(f"/subscriptions/{pk}/rotate-secret/"), 403)


def test_charlie_gets_404_for_a_subscription_of_workspace_a(charlie_api, team):
    issued = subscription_create(workspace=team.workspace_a, url=NEW["url"], event_types=NEW["event_types"])
    pk = issued.subscription.pk
    assert_error(charlie_api.get(f"/subscriptions/{pk}/"), 404)
    assert_error(charlie_api.patch(f"/subscriptions/{pk}/", {"active": False}), 404)
    assert_error(charlie_api.delete(f"/subscriptions/{pk}/"), 404)
    assert_error(charlie_api.post(f"/subscriptions/{pk}/rotate-secret/"), 404)
    assert EventSubscription.objects.filter(pk=pk, active=True).exists()


def test_an_admin_changes_pauses_and_deletes_a_subscription(alice_api, team):
    pk = data_of(alice_api.post("/subscriptions/", NEW), 201)["id"]
    changed = data_of(
        alice_api.patch(f"/subscriptions/{pk}/", {"event_types": ["channel.status"], "active": False})
    )
    assert changed["event_types"] == ["channel.status"]
    assert changed["active"] is False
    assert alice_api.delete(f"/subscriptions/{pk}/").status_code == 204
    assert not EventSubscription.objects.filter(pk=pk).exists()


def test_patching_a_subscription_validates_it(alice_api):
    pk = data_of(alice_api.post("/subscriptions/", NEW), 201)["id"]
    error = assert_error(alice_api.patch(f"/subscriptions/{pk}/", {"event_types": ["nope"], "url": "x"}), 400)
    assert {"event_types", "url"} <= set(error["fields"])


def test_rotating_the_secret_shows_the_new_one_once(alice_api):
    created = data_of(alice_api.post("/subscriptions/", NEW), 201)
    rotated = data_of(alice_api.post(f"/subscriptions/{created['id']}/rotate-secret/"))
    assert rotated["secret"] != created["secret"]
    subscription = EventSubscription.objects.get(pk=created["id"])
    assert crypto.decrypt(subscription.encrypted_secret) == rotated["secret"]


def test_a_chat_change_through_the_api_queues_one_delivery_per_interested_subscription(alice_api, team):
    wants = subscription_create(workspace=team.workspace_a, url=NEW["url"], event_types=["chat.updated"])
    subscription_create(workspace=team.workspace_a, url=NEW["url"], event_types=["channel.status"])
    paused = subscription_create(workspace=team.workspace_a, url=NEW["url"], event_types=["chat.updated"])
    EventSubscription.objects.filter(pk=paused.subscription.pk).update(active=False)
    subscription_create(workspace=team.workspace_b, url=NEW["url"], event_types=["chat.updated"])

    data_of(alice_api.patch(f"/chats/{team.chat_a.pk}/", {"status": "resolved"}))

    [row] = deliveries()
    assert row.payload["subscription_id"] == wants.subscription.pk
    assert row.payload["event_type"] == "chat.updated"
    assert row.payload["data"]["chat"]["status"] == "resolved"
    assert row.channel_id == team.channel_a.pk
    assert row.chat_id is None  # a slow subscriber must not hold back the chat's messages


def test_a_send_through_the_api_emits_message_created(bob_api, team):
    subscription_create(workspace=team.workspace_a, url=NEW["url"], event_types=["message.created"])
    message = data_of(
        bob_api.post(f"/chats/{team.chat_a.pk}/messages/", {"text": "hi", "client_message_id": "s-1"}), 202
    )
    [row] = deliveries()
    assert row.payload["data"]["message"]["id"] == message["id"]
    assert row.payload["data"]["message"]["status"] == "pending"


def test_pausing_a_channel_emits_channel_status(alice_api, team):
    subscription_create(workspace=team.workspace_a, url=NEW["url"], event_types=["channel.status"])
    data_of(alice_api.post(f"/channels/{team.channel_a.pk}/pause/"))
    [row] = deliveries()
    assert row.payload["data"] == {
        "channel_id": str(team.channel_a.pk),
        "status": "paused",
        "status_detail": "Paused by an admin",
        "paused_until": None,
    }


def test_events_of_a_rolled_back_change_are_never_delivered(team):
    subscription_create(workspace=team.workspace_a, url=NEW["url"], event_types=["chat.updated"])
    with pytest.raises(RuntimeError), transaction.atomic():
        subscription_events_emit(
            workspace=team.workspace_a, event_type="chat.updated", data={"chat": {}}, channel=team.channel_a
        )
        raise RuntimeError("the change failed")
    assert deliveries() == []


def test_each_delivery_gets_its_own_event_id(team):
    subscription_create(workspace=team.workspace_a, url=NEW["url"], event_types=["chat.updated"])
    for _ in range(2):
        subscription_events_emit(
            workspace=team.workspace_a, event_type="chat.updated", data={}, channel=team.channel_a
        )
    first, second = deliveries()
    assert first.payload["event_id"] != second.payload["event_id"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "http://0.0.0.0/hook",
    ],
)
def test_a_url_at_a_private_or_local_address_is_refused(alice_api, settings, url):
    settings.SUBSCRIPTIONS_ALLOW_PRIVATE_URLS = False
    error = assert_error(
        alice_api.post("/subscriptions/", {"url": url, "event_types": ["message.created"]}), 400
    )
    assert "private or local address" in error["fields"]["url"][0]


def test_public_addresses_and_names_are_accepted(alice_api, settings):
    settings.SUBSCRIPTIONS_ALLOW_PRIVATE_URLS = False
    for url in ("https://93.184.216.34/hook", NEW["url"]):
        response = alice_api.post("/subscriptions/", {"url": url, "event_types": ["message.created"]})
        assert response.status_code == 201, response.content
