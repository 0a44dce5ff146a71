"""Outbox admin: retry now / cancel for the workspace's admin, nothing for another workspace's."""

from __future__ import annotations

import pytest
from django.urls import reverse

from outbox.models import OutboxMessage
from outbox.services import outbox_drain
from tests.outbox.helpers import open_chat, provider_channel, send_text

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:outbox_outboxmessage_changelist"


@pytest.fixture
def failed_row_a(team, fake_provider):
    fake_provider.add_rule("whapi_error", status=400, message="Wrong request parameters")
    message = send_text(open_chat(provider_channel(fake_provider, workspace=team.workspace_a)), "for A")
    outbox_drain()
    return OutboxMessage.objects.get(message=message)


def test_charlie_cannot_retry_or_cancel_workspace_a_rows(team, charlie_client, failed_row_a):
    url = reverse(CHANGELIST)
    for action in ("retry_now", "cancel"):
        charlie_client.post(url, {"action": action, "_selected_action": [str(failed_row_a.pk)]})
        failed_row_a.refresh_from_db()
        assert failed_row_a.status == OutboxMessage.Status.FAILED
    page = charlie_client.get(url).content.decode()
    assert f"/{failed_row_a.pk}/change/" not in page
    change = charlie_client.get(reverse("admin:outbox_outboxmessage_change", args=[failed_row_a.pk]))
    assert change.status_code in (302, 403, 404)
    if change.status_code == 302:
        assert change.url == reverse("admin:index")


def test_alice_retries_a_failed_row_and_it_is_sent(team, alice_client, failed_row_a):
    alice_client.post(
        reverse(CHANGELIST), {"action": "retry_now", "_selected_action": [str(failed_row_a.pk)]}
    )
    failed_row_a.refresh_from_db()
    assert (failed_row_a.status, failed_row_a.attempts) == (OutboxMessage.Status.QUEUED, 0)
    outbox_drain()
    failed_row_a.refresh_from_db()
    assert failed_row_a.status == OutboxMessage.Status.SENT


def test_alice_cancels_a_queued_row(team, alice_client, fake_provider):
    message = send_text(open_chat(provider_channel(fake_provider, workspace=team.workspace_a)), "stop it")
    row = OutboxMessage.objects.get(message=message)
    alice_client.post(reverse(CHANGELIST), {"action": "cancel", "_selected_action": [str(row.pk)]})
    row.refresh_from_db()
    assert row.status == OutboxMessage.Status.CANCELLED
    outbox_drain()
    assert fake_provider.sends() == []


def test_the_outbox_list_filters_by_status_and_retrying(team, alice_client, failed_row_a):
    url = reverse(CHANGELIST)
    assert (
        f"/{failed_row_a.pk}/change/" in alice_client.get(url, {"status__exact": "failed"}).content.decode()
    )
    assert (
        f"/{failed_row_a.pk}/change/" not in alice_client.get(url, {"status__exact": "sent"}).content.decode()
    )
    assert alice_client.get(url, {"waiting": "retrying"}).status_code == 200
