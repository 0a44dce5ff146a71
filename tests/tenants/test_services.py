"""Removing someone from a workspace: their tokens stop, their chats go back to the team, every path."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from inbox.models import Chat
from tenants.models import ApiToken, AuditLog, Membership
from tenants.services import apitoken_create, membership_remove
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def bob_busy(team):
    """Bob works in both workspaces and holds a chat in each, plus an API token for workspace A."""
    MembershipFactory(workspace=team.workspace_b, user=team.bob, role=Membership.Role.AGENT)
    Chat.objects.filter(pk__in=[team.chat_a.pk, team.chat_b.pk]).update(assignee=team.bob)
    return apitoken_create(workspace=team.workspace_a, user=team.bob).api_token


def _assignees(team) -> tuple:
    return (
        Chat.objects.get(pk=team.chat_a.pk).assignee_id,
        Chat.objects.get(pk=team.chat_b.pk).assignee_id,
    )


def test_removing_a_member_unassigns_their_chats_in_that_workspace_only(team, bob_busy, monkeypatch):
    pushed: list[int] = []
    monkeypatch.setattr("inbox.services.chats.push_chat_updated", lambda chat: pushed.append(chat.pk))
    membership_remove(
        membership=Membership.objects.get(user=team.bob, workspace=team.workspace_a), actor=team.alice
    )
    assert _assignees(team) == (None, team.bob.pk)
    assert pushed == [team.chat_a.pk]  # the other agents' lists update at once
    assert AuditLog.objects.filter(workspace=team.workspace_a, action="chats.unassigned").exists()
    assert ApiToken.objects.get(pk=bob_busy.pk).revoked_at is not None


def test_deleting_a_membership_in_admin_goes_through_the_same_removal(team, bob_busy, alice_client: Client):
    membership = Membership.objects.get(user=team.bob, workspace=team.workspace_a)
    url = reverse("admin:tenants_membership_delete", args=[membership.pk])
    response = alice_client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert _assignees(team) == (None, team.bob.pk)
    assert ApiToken.objects.get(pk=bob_busy.pk).revoked_at is not None
    assert AuditLog.objects.filter(workspace=team.workspace_a, action="member.removed").exists()


def test_bulk_delete_in_admin_keeps_the_last_admin_and_says_why(team, bob_busy, alice_client: Client):
    alice_membership = Membership.objects.get(user=team.alice, workspace=team.workspace_a)
    bob_membership = Membership.objects.get(user=team.bob, workspace=team.workspace_a)
    response = alice_client.post(
        reverse("admin:tenants_membership_changelist"),
        {
            "action": "delete_selected",
            "_selected_action": [str(alice_membership.pk), str(bob_membership.pk)],
            "post": "yes",
        },
        follow=True,
    )
    assert "a workspace needs at least one admin" in response.content.decode()
    assert Membership.objects.filter(pk=alice_membership.pk).exists()
    assert not Membership.objects.filter(pk=bob_membership.pk).exists()
    assert _assignees(team) == (None, team.bob.pk)


def _form_fields(html: str) -> dict[str, str]:
    """The values a browser would submit from the page's main form (checked boxes, selected options)."""
    from html.parser import HTMLParser

    fields: dict[str, str] = {}

    class Parser(HTMLParser):
        select: str | None = None

        def handle_starttag(self, tag: str, attrs: list) -> None:
            a = dict(attrs)
            name = a.get("name")
            if tag == "input" and name and a.get("type") not in {"submit", "button", "file"}:
                if a.get("type") in {"checkbox", "radio"} and "checked" not in a:
                    return
                fields[name] = a.get("value") or ("on" if a.get("type") == "checkbox" else "")
            elif tag == "select" and name:
                self.select = name
                fields.setdefault(name, "")
            elif tag == "option" and self.select and "selected" in a:
                fields[self.select] = a.get("value") or ""
            elif tag == "textarea" and name:
                fields[name] = ""

        def handle_endtag(self, tag: str) -> None:
            if tag == "select":
                self.select = None

    Parser().feed(html)
    return fields


def test_deleting_a_member_inline_on_the_workspace_page_goes_through_the_removal(
    team, bob_busy, alice_client: Client
):
    url = reverse("admin:tenants_workspace_change", args=[team.workspace_a.pk])
    data = _form_fields(alice_client.get(url).content.decode())
    bob_membership = Membership.objects.get(user=team.bob, workspace=team.workspace_a)
    (row,) = [
        k.rsplit("-", 1)[0] for k, v in data.items() if k.endswith("-id") and v == str(bob_membership.pk)
    ]
    data[f"{row}-DELETE"] = "on"
    response = alice_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert not Membership.objects.filter(pk=bob_membership.pk).exists()
    assert _assignees(team) == (None, team.bob.pk)
    assert ApiToken.objects.get(pk=bob_busy.pk).revoked_at is not None
