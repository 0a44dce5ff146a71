"""Django admin: superusers see everything, workspace admins only their own workspaces' objects."""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from channels_app.models import Channel, ChannelToken
from channels_app.services import channel_token_read, channel_token_set
from outbox.models import OutboxMessage
from tenants.models import ApiToken, AuditLog, Membership, Workspace
from tenants.services import apitoken_create
from tests.factories import UserFactory
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db


def _workspace_a_objects(team) -> dict[type, object]:
    """One object of workspace A for every model registered in admin (scoped models)."""
    from django.utils import timezone

    from inbox.models import Contact

    contact = Contact.objects.create(channel=team.channel_a, wa_id="15550001", name="Ana")
    outbox_row = OutboxMessage.objects.create(
        channel=team.channel_a,
        chat=team.chat_a,
        message_type="text",
        payload={},
        next_attempt_at=timezone.now(),
    )
    event = WebhookEvent.objects.create(provider="whapi", channel=team.channel_a, raw_body=b"{}")
    token = apitoken_create(workspace=team.workspace_a, user=team.alice).api_token
    audit = AuditLog.objects.create(workspace=team.workspace_a, action="test.action")
    from outbox.models import EventSubscription
    from outbox.subscriptions import subscription_create

    subscription = subscription_create(
        workspace=team.workspace_a, url="https://crm.example/hook", event_types=["message.created"]
    ).subscription
    return {
        EventSubscription: subscription,
        Workspace: team.workspace_a,
        Membership: Membership.objects.get(user=team.bob, workspace=team.workspace_a),
        Channel: team.channel_a,
        type(team.chat_a): team.chat_a,
        type(team.message_a): team.message_a,
        Contact: contact,
        OutboxMessage: outbox_row,
        WebhookEvent: event,
        ApiToken: token,
        AuditLog: audit,
    }


def _admin_url(obj: object, view: str) -> str:
    meta = obj._meta  # type: ignore[attr-defined]
    if view == "changelist":
        return reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_{view}", args=[obj.pk])  # type: ignore[attr-defined]


def test_every_project_model_in_admin_is_covered_by_the_isolation_test(team) -> None:
    project_apps = {"tenants", "channels_app", "inbox", "outbox", "webhooks"}
    registered = {m for m in admin.site._registry if m._meta.app_label in project_apps}
    assert registered == set(_workspace_a_objects(team))


def test_charlie_cannot_see_or_open_workspace_a_objects_in_admin(team, charlie_client: Client) -> None:
    for model, obj in _workspace_a_objects(team).items():
        changelist = charlie_client.get(_admin_url(obj, "changelist"))
        assert changelist.status_code == 200, model
        assert f"/{obj.pk}/change/" not in changelist.content.decode(), model  # type: ignore[attr-defined]
        change = charlie_client.get(_admin_url(obj, "change"))
        # Django admin answers a row outside the queryset with a redirect to the index + "doesn't exist".
        assert change.status_code in (302, 403, 404), model
        if change.status_code == 302:
            assert change.url == reverse("admin:index"), model
        assert charlie_client.post(_admin_url(obj, "delete"), {"post": "yes"}).status_code in (302, 403, 404)
        assert type(obj).objects.filter(pk=obj.pk).exists(), model  # type: ignore[attr-defined]


def test_alice_sees_her_workspace_objects_in_admin(team, alice_client: Client) -> None:
    for model, obj in _workspace_a_objects(team).items():
        response = alice_client.get(_admin_url(obj, "change"))
        assert response.status_code == 200, model


def test_charlie_gets_no_workspace_a_choices_in_foreign_keys(team, charlie_client: Client) -> None:
    page = charlie_client.get(reverse("admin:tenants_membership_add")).content.decode()
    assert str(team.workspace_b.pk) in page
    assert str(team.workspace_a.pk) not in page
    chat_page = charlie_client.get(_admin_url(team.chat_b, "change")).content.decode()
    assert "alice@example.com" not in chat_page and "bob@example.com" not in chat_page


def test_actions_only_touch_objects_in_scope(team, charlie_client: Client) -> None:
    url = reverse("admin:channels_app_channel_changelist")
    charlie_client.post(
        url, {"action": "pause", "_selected_action": [str(team.channel_a.pk), str(team.channel_b.pk)]}
    )
    team.channel_a.refresh_from_db()
    team.channel_b.refresh_from_db()
    assert team.channel_a.status == Channel.Status.CONNECTED
    assert team.channel_b.status == Channel.Status.PAUSED


def test_pause_and_resume_actions_work_for_the_workspace_admin(team, alice_client: Client) -> None:
    url = reverse("admin:channels_app_channel_changelist")
    alice_client.post(url, {"action": "pause", "_selected_action": [str(team.channel_a.pk)]})
    team.channel_a.refresh_from_db()
    assert team.channel_a.status == Channel.Status.PAUSED
    alice_client.post(url, {"action": "resume", "_selected_action": [str(team.channel_a.pk)]})
    team.channel_a.refresh_from_db()
    assert team.channel_a.status == Channel.Status.CONNECTED


def test_a_superuser_sees_every_workspace(team) -> None:
    root = UserFactory(username="root@example.com", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(root)
    page = client.get(reverse("admin:channels_app_channel_changelist")).content.decode()
    assert "Alpha support" in page and "Beta support" in page


def test_a_staff_user_who_is_only_an_agent_gets_no_admin(team) -> None:
    team.bob.is_staff = True
    team.bob.save()
    client = Client()
    client.force_login(team.bob)
    assert client.get(reverse("admin:channels_app_channel_changelist")).status_code == 403


def test_channel_tokens_are_write_only_in_admin(team, alice_client: Client) -> None:
    channel_token_set(channel=team.channel_a, token_type="api_token", value="tok-never-shown-123")
    page = alice_client.get(_admin_url(team.channel_a, "change")).content.decode()
    assert "tok-never-shown-123" not in page
    stored = ChannelToken.objects.get(channel=team.channel_a).encrypted_value
    assert stored not in page
    assert "API token ✓" in page
    response = alice_client.post(
        _admin_url(team.channel_a, "change"),
        {
            "display_name": "Alpha support",
            "phone_number": team.channel_a.phone_number,
            "meta_phone_number_id": "",
            "whapi_channel_id": "",
            "api_base_url": "",
            "rate_limit_per_second": "",
            "new_api_token": "tok-replaced-456",
            "new_app_secret": "",
            "new_verify_token": "",
            "new_webhook_secret": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert channel_token_read(channel=team.channel_a, token_type="api_token") == "tok-replaced-456"
    assert AuditLog.objects.filter(action="channel.token_rotated").exists()


def test_a_workspace_admin_adds_a_channel_with_tokens(team, alice_client: Client) -> None:
    response = alice_client.post(
        reverse("admin:channels_app_channel_add"),
        {
            "workspace": str(team.workspace_a.pk),
            "provider": "meta",
            "display_name": "Meta sales",
            "phone_number": "+15550002",
            "meta_phone_number_id": "106540352242922",
            "whapi_channel_id": "",
            "api_base_url": "",
            "rate_limit_per_second": "",
            "new_api_token": "EAAG-token",
            "new_app_secret": "app-secret",
            "new_verify_token": "",
            "new_webhook_secret": "",
        },
    )
    assert response.status_code == 302
    channel = Channel.objects.get(display_name="Meta sales")
    assert channel.workspace == team.workspace_a
    assert channel_token_read(channel=channel, token_type="app_secret") == "app-secret"


def test_charlie_cannot_add_a_channel_to_workspace_a(team, charlie_client: Client) -> None:
    response = charlie_client.post(
        reverse("admin:channels_app_channel_add"),
        {
            "workspace": str(team.workspace_a.pk),
            "provider": "sandbox",
            "display_name": "Intruder",
            "phone_number": "1",
        },
    )
    assert response.status_code == 200  # the form is shown again with an invalid choice
    assert "Select a valid choice" in response.content.decode()
    assert not Channel.objects.filter(display_name="Intruder").exists()


def test_a_workspace_admin_adds_a_member_by_email(team, alice_client: Client) -> None:
    response = alice_client.post(
        reverse("admin:tenants_membership_add"),
        {
            "workspace": str(team.workspace_a.pk),
            "email": "dana@example.com",
            "password": "long-password",
            "role": "agent",
        },
    )
    assert response.status_code == 302
    membership = Membership.objects.get(user__email="dana@example.com")
    assert membership.workspace == team.workspace_a and membership.role == "agent"


def test_raw_webhook_bodies_are_read_only(team, alice_client: Client) -> None:
    event = WebhookEvent.objects.create(
        provider="whapi", channel=team.channel_a, raw_body=b'{"messages": []}'
    )
    page = alice_client.get(_admin_url(event, "change")).content.decode()
    assert "{&quot;messages&quot;: []}" in page
    assert not re.search(r'<textarea[^>]*name="raw_body"', page)


def test_the_audit_log_is_append_only(team, alice_client: Client) -> None:
    entry = AuditLog.objects.create(workspace=team.workspace_a, action="x")
    assert alice_client.post(_admin_url(entry, "delete"), {"post": "yes"}).status_code == 403
    assert AuditLog.objects.filter(pk=entry.pk).exists()


def test_subscriptions_in_admin_never_show_their_secret_and_can_be_paused(team, alice_client: Client) -> None:
    from channels_app import crypto
    from outbox.subscriptions import subscription_create

    issued = subscription_create(
        workspace=team.workspace_a, url="https://crm.example/hook", event_types=["chat.updated"]
    )
    page = alice_client.get(_admin_url(issued.subscription, "change")).content.decode()
    assert issued.secret not in page and issued.subscription.encrypted_secret not in page
    assert crypto.decrypt(issued.subscription.encrypted_secret) == issued.secret
    alice_client.post(
        reverse("admin:outbox_eventsubscription_changelist"),
        {"action": "pause", "_selected_action": [issued.subscription.pk]},
    )
    issued.subscription.refresh_from_db()
    assert issued.subscription.active is False
    assert AuditLog.objects.filter(action="subscription.changed").exists()


def test_a_messages_admin_page_shows_its_timeline(team, alice_client: Client) -> None:
    from django.utils import timezone

    from inbox.models import Message, MessageEvent
    from tests.factories import MessageFactory

    sent = MessageFactory(chat=team.chat_a, direction=Message.Direction.OUTBOUND, status="failed")
    for kind, detail in (("queued", {}), ("claimed", {}), ("failed", {"code": "131047"})):
        MessageEvent.objects.create(message=sent, kind=kind, detail=detail, occurred_at=timezone.now())
    page = alice_client.get(_admin_url(sent, "change")).content.decode()
    assert page.index("<td>queued</td>") < page.index("<td>claimed</td>") < page.index("<td>failed</td>")
    assert "code: 131047" in page
