"""/api/v1/members/: admins list, add, change and remove the people of their workspace."""

from __future__ import annotations

import pytest

from tenants.models import ApiToken, Membership
from tests.api.conftest import assert_error, data_of

pytestmark = pytest.mark.django_db


def test_an_admin_lists_the_members(alice_api, team):
    members = data_of(alice_api.get("/members/"))
    assert [(m["email"], m["role"]) for m in members] == [
        ("alice@example.com", "admin"),
        ("bob@example.com", "agent"),
    ]


def test_agents_cannot_manage_members(bob_api, team):
    bob_membership = Membership.objects.get(user=team.bob)
    assert_error(bob_api.get("/members/"), 403)
    assert_error(bob_api.post("/members/", {"email": "x@example.com", "password": "password123"}), 403)
    assert_error(bob_api.patch(f"/members/{bob_membership.pk}/", {"role": "admin"}), 403)
    assert_error(bob_api.delete(f"/members/{bob_membership.pk}/"), 403)


def test_charlie_gets_404_for_a_member_of_workspace_a(charlie_api, team):
    bob_membership = Membership.objects.get(user=team.bob)
    assert_error(charlie_api.get(f"/members/{bob_membership.pk}/"), 404)
    assert_error(charlie_api.patch(f"/members/{bob_membership.pk}/", {"role": "admin"}), 404)
    assert_error(charlie_api.delete(f"/members/{bob_membership.pk}/"), 404)
    assert Membership.objects.filter(pk=bob_membership.pk, role="agent").exists()


def test_an_admin_adds_a_new_person_as_an_agent(alice_api, team):
    member = data_of(
        alice_api.post("/members/", {"email": "dora@example.com", "password": "password123"}), 201
    )
    assert member["email"] == "dora@example.com"
    assert member["role"] == "agent"
    assert Membership.objects.filter(workspace=team.workspace_a, user__email="dora@example.com").exists()


def test_adding_someone_twice_is_a_400_on_email(alice_api, team):
    error = assert_error(alice_api.post("/members/", {"email": "bob@example.com"}), 400)
    assert "email" in error["fields"]


def test_adding_a_member_validates_the_input(alice_api):
    error = assert_error(alice_api.post("/members/", {"email": "not-an-email", "role": "owner"}), 400)
    assert {"email", "role"} <= set(error["fields"])


def test_a_new_person_needs_a_password(alice_api):
    error = assert_error(alice_api.post("/members/", {"email": "eve@example.com"}), 400)
    assert "password" in error["fields"]


def test_an_admin_promotes_an_agent(alice_api, team):
    bob_membership = Membership.objects.get(user=team.bob)
    assert data_of(alice_api.patch(f"/members/{bob_membership.pk}/", {"role": "admin"}))["role"] == "admin"


def test_changing_a_role_validates_it(alice_api, team):
    bob_membership = Membership.objects.get(user=team.bob)
    assert (
        "role"
        in assert_error(alice_api.patch(f"/members/{bob_membership.pk}/", {"role": "owner"}), 400)["fields"]
    )


def test_the_last_admin_cannot_be_demoted_or_removed(alice_api, team):
    alice_membership = Membership.objects.get(user=team.alice, workspace=team.workspace_a)
    assert_error(alice_api.patch(f"/members/{alice_membership.pk}/", {"role": "agent"}), 400, "last_admin")
    assert_error(alice_api.delete(f"/members/{alice_membership.pk}/"), 400, "last_admin")


def test_removing_a_member_revokes_their_tokens(alice_api, bob_api, team):
    bob_membership = Membership.objects.get(user=team.bob)
    response = alice_api.delete(f"/members/{bob_membership.pk}/")
    assert response.status_code == 204
    assert not Membership.objects.filter(pk=bob_membership.pk).exists()
    assert ApiToken.objects.get(user=team.bob).revoked_at is not None
    assert_error(bob_api.get("/chats/"), 401)
