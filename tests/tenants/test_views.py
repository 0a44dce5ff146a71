from __future__ import annotations

import pytest
from django.http import HttpResponse
from django.test import Client, RequestFactory
from django.urls import reverse

from tenants.decorators import workspace_member_required
from tenants.middleware import SESSION_WORKSPACE_KEY, CurrentWorkspaceMiddleware
from tenants.models import Workspace
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


def test_the_login_page_is_styled_and_labelled(client: Client) -> None:
    page = client.get(reverse("tenants:login")).content.decode()
    assert 'href="/static/css/app.css"' in page
    assert "<label" in page and 'name="username"' in page and 'name="password"' in page


def test_signing_in_with_the_right_password_works(team, client: Client) -> None:
    response = client.post(
        reverse("tenants:login"), {"username": "bob@example.com", "password": "password123"}
    )
    assert response.status_code == 302
    assert client.session.get("_auth_user_id") == str(team.bob.pk)


def test_a_wrong_password_is_refused_with_a_message(team, client: Client) -> None:
    response = client.post(reverse("tenants:login"), {"username": "bob@example.com", "password": "nope"})
    assert response.status_code == 200
    assert "alert-error" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_logout_signs_out(team, bob_client: Client) -> None:
    response = bob_client.post(reverse("tenants:logout"))
    assert response.status_code == 200
    assert "_auth_user_id" not in bob_client.session


def test_a_user_with_several_workspaces_picks_one_and_it_sticks(team, bob_client: Client) -> None:
    MembershipFactory(workspace=team.workspace_b, user=team.bob)
    page = bob_client.get(reverse("tenants:workspace_select")).content.decode()
    assert "Alpha Co" in page and "Beta Co" in page
    response = bob_client.post(
        reverse("tenants:workspace_select"), {"workspace_id": str(team.workspace_b.pk), "next": "/inbox/"}
    )
    assert response.status_code == 302 and response.url == "/inbox/"
    assert bob_client.session[SESSION_WORKSPACE_KEY] == str(team.workspace_b.pk)


def test_picking_a_workspace_you_do_not_belong_to_is_a_404(team, charlie_client: Client) -> None:
    response = charlie_client.post(
        reverse("tenants:workspace_select"), {"workspace_id": str(team.workspace_a.pk)}
    )
    assert response.status_code == 404
    assert SESSION_WORKSPACE_KEY not in charlie_client.session


def test_picking_refuses_an_offsite_next(team, bob_client: Client) -> None:
    response = bob_client.post(
        reverse("tenants:workspace_select"),
        {"workspace_id": str(team.workspace_a.pk), "next": "https://evil.example/"},
    )
    assert response.url == "/inbox/"


def _request_for(user, session: dict | None = None):
    request = RequestFactory().get("/inbox/")
    request.user = user
    request.session = session or {}
    CurrentWorkspaceMiddleware(lambda r: HttpResponse())(request)
    return request


@workspace_member_required
def _protected(request):
    return HttpResponse("inside")


def test_a_single_workspace_member_needs_no_choice(team) -> None:
    request = _request_for(team.bob)
    assert request.workspace == team.workspace_a
    assert _protected(request).content == b"inside"


def test_a_multi_workspace_member_is_sent_to_choose(team) -> None:
    MembershipFactory(workspace=team.workspace_b, user=team.bob)
    response = _protected(_request_for(team.bob))
    assert response.status_code == 302 and response.url.startswith("/workspaces/")
    chosen = _request_for(team.bob, {SESSION_WORKSPACE_KEY: str(team.workspace_b.pk)})
    assert chosen.workspace == team.workspace_b


def test_a_session_cannot_choose_a_foreign_workspace(team) -> None:
    request = _request_for(team.charlie, {SESSION_WORKSPACE_KEY: str(team.workspace_a.pk)})
    assert request.workspace == team.workspace_b


def test_suspended_workspace_members_get_a_clear_page(team) -> None:
    Workspace.objects.filter(pk=team.workspace_a.pk).update(status=Workspace.Status.SUSPENDED)
    response = _protected(_request_for(team.bob))
    assert response.status_code == 403
    assert b"is suspended" in response.content
    assert b"still received" in response.content


def test_repeated_failures_lock_the_account_out_and_are_audited(team, client: Client) -> None:
    from tenants.login_throttle import MAX_FAILURES
    from tenants.models import AuditLog

    for _ in range(MAX_FAILURES):
        client.post(reverse("tenants:login"), {"username": "bob@example.com", "password": "wrong"})
    locked = client.post(reverse("tenants:login"), {"username": "bob@example.com", "password": "password123"})
    assert locked.status_code == 429
    assert "Too many failed sign-in attempts" in locked.content.decode()
    assert "_auth_user_id" not in client.session
    assert AuditLog.objects.filter(action="auth.sign_in_failed").count() == MAX_FAILURES
    assert AuditLog.objects.filter(action="auth.sign_in_locked_out").exists()


def test_a_successful_sign_in_is_audited(team, client: Client) -> None:
    from tenants.models import AuditLog

    client.post(reverse("tenants:login"), {"username": "bob@example.com", "password": "password123"})
    entry = AuditLog.objects.get(action="auth.signed_in")
    assert entry.actor == team.bob and entry.ip_address == "127.0.0.1"
