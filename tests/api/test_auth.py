"""Who may call the API: bearer tokens (hashed, revocable, last use kept) or the session with CSRF."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone
from django.utils.crypto import get_random_string

from tenants.models import ApiToken, Membership
from tenants.services import apitoken_revoke
from tests.api.conftest import API, api_client_for, assert_error, data_of

pytestmark = pytest.mark.django_db


def test_a_valid_token_reads_its_workspace(alice_api, team):
    channels = data_of(alice_api.get("/channels/"))
    assert [c["id"] for c in channels] == [str(team.channel_a.pk)]


def test_a_request_without_credentials_is_a_401_envelope(team):
    response = Client().get(f"{API}/channels/")
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_an_unknown_token_is_a_401(team):
    response = Client().get(f"{API}/channels/", HTTP_AUTHORIZATION="Bearer wai_not-a-real-token")
    assert_error(response, 401, "authentication_failed")


def test_a_malformed_authorization_header_is_a_401(team):
    response = Client().get(f"{API}/channels/", HTTP_AUTHORIZATION="Bearer two words")
    assert_error(response, 401, "authentication_failed")


def test_a_revoked_token_is_a_401(alice_api):
    api_token = ApiToken.objects.get(user=alice_api.user)
    apitoken_revoke(api_token=api_token)
    assert_error(alice_api.get("/channels/"), 401, "authentication_failed")


def test_a_token_stops_working_when_its_owner_leaves_the_workspace(bob_api, team):
    Membership.objects.filter(user=team.bob, workspace=team.workspace_a).delete()
    assert_error(bob_api.get("/chats/"), 401)


def test_using_a_token_records_when_it_was_last_used(alice_api):
    api_token = ApiToken.objects.get(user=alice_api.user)
    assert api_token.last_used_at is None
    data_of(alice_api.get("/channels/"))
    api_token.refresh_from_db()
    assert api_token.last_used_at is not None


def test_last_used_is_written_at_most_once_a_minute(alice_api, django_assert_num_queries):
    api_token = ApiToken.objects.get(user=alice_api.user)
    recently = timezone.now() - timedelta(seconds=5)
    ApiToken.objects.filter(pk=api_token.pk).update(last_used_at=recently)
    data_of(alice_api.get("/channels/"))
    api_token.refresh_from_db()
    assert api_token.last_used_at == recently

    an_hour_ago = timezone.now() - timedelta(hours=1)
    ApiToken.objects.filter(pk=api_token.pk).update(last_used_at=an_hour_ago)
    data_of(alice_api.get("/channels/"))
    api_token.refresh_from_db()
    assert api_token.last_used_at > an_hour_ago


def test_a_token_acts_in_its_own_workspace_even_when_its_owner_has_several(team):
    # Alice joins B as an agent; her A token still sees only A, a B token only B.
    Membership.objects.create(workspace=team.workspace_b, user=team.alice, role=Membership.Role.AGENT)
    a_api = api_client_for(team.alice, team.workspace_a)
    b_api = api_client_for(team.alice, team.workspace_b)
    assert [c["id"] for c in data_of(a_api.get("/chats/"))] == [team.chat_a.pk]
    assert [c["id"] for c in data_of(b_api.get("/chats/"))] == [team.chat_b.pk]
    assert_error(a_api.get(f"/chats/{team.chat_b.pk}/"), 404)
    # ... and the B token carries the agent role there.
    assert_error(b_api.get("/members/"), 403)


def test_the_session_reads_without_a_token(alice_client, team):
    response = alice_client.get(f"{API}/chats/")
    assert [c["id"] for c in data_of(response)] == [team.chat_a.pk]


def test_a_session_write_without_the_csrf_token_is_refused(team):
    client = Client(enforce_csrf_checks=True)
    client.force_login(team.bob)
    response = client.post(f"{API}/chats/{team.chat_a.pk}/read/", {}, content_type="application/json")
    error = assert_error(response, 403, "permission_denied")
    assert "CSRF" in error["message"]


def test_a_session_write_with_the_csrf_token_goes_through(team):
    client = Client(enforce_csrf_checks=True)
    client.force_login(team.bob)
    # What the page's cookie and hx-headers carry: the same CSRF secret in the cookie and the header.
    csrf = get_random_string(32)
    client.cookies[settings.CSRF_COOKIE_NAME] = csrf
    response = client.post(
        f"{API}/chats/{team.chat_a.pk}/read/", {}, content_type="application/json", HTTP_X_CSRFTOKEN=csrf
    )
    assert data_of(response)["unread_count"] == 0


def test_a_bearer_write_needs_no_csrf_token(bob_api, team):
    # Client() in tests skips CSRF unless asked; prove it with enforcement on.
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        f"{API}/chats/{team.chat_a.pk}/read/",
        {},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {bob_api.token}",
    )
    data_of(response)


def test_a_suspended_workspace_is_refused(alice_api, team):
    team.workspace_a.status = "suspended"
    team.workspace_a.save(update_fields=["status"])
    assert_error(alice_api.get("/chats/"), 403)
