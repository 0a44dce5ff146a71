from __future__ import annotations

import pytest
from django.http import Http404

from channels_app.access import access_channel
from inbox.access import access_chat, access_message
from tenants.access import access_workspace
from tenants.models import Workspace

pytestmark = pytest.mark.django_db


def test_members_reach_their_own_workspace_objects(team) -> None:
    assert access_workspace(user=team.bob, workspace_id=team.workspace_a.pk) == team.workspace_a
    assert access_channel(user=team.bob, channel_id=team.channel_a.pk) == team.channel_a
    assert access_chat(user=team.bob, chat_id=team.chat_a.pk) == team.chat_a
    assert access_message(user=team.bob, message_id=team.message_a.pk) == team.message_a


@pytest.mark.parametrize(
    "lookup",
    [
        lambda t: access_workspace(user=t.charlie, workspace_id=t.workspace_a.pk),
        lambda t: access_channel(user=t.charlie, channel_id=t.channel_a.pk),
        lambda t: access_chat(user=t.charlie, chat_id=t.chat_a.pk),
        lambda t: access_chat(user=t.charlie, chat_id=t.chat_a.pk, for_write=True),
        lambda t: access_message(user=t.charlie, message_id=t.message_a.pk),
    ],
)
def test_another_workspace_object_is_a_404(team, lookup) -> None:
    with pytest.raises(Http404):
        lookup(team)


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "999999", None, "", "1; drop table"])
def test_malformed_ids_are_a_404_not_a_500(team, bad_id) -> None:
    with pytest.raises(Http404):
        access_channel(user=team.alice, channel_id=bad_id)
    with pytest.raises(Http404):
        access_chat(user=team.alice, chat_id=bad_id)


def test_a_suspended_workspace_hides_its_objects_from_members(team) -> None:
    Workspace.objects.filter(pk=team.workspace_a.pk).update(status=Workspace.Status.SUSPENDED)
    with pytest.raises(Http404):
        access_chat(user=team.bob, chat_id=team.chat_a.pk)
    with pytest.raises(Http404):
        access_channel(user=team.bob, channel_id=team.channel_a.pk)


def test_scoping_to_one_workspace_excludes_the_users_other_workspaces(team) -> None:
    from tests.factories import MembershipFactory

    MembershipFactory(workspace=team.workspace_b, user=team.bob)
    assert access_chat(user=team.bob, chat_id=team.chat_b.pk) == team.chat_b
    with pytest.raises(Http404):
        access_chat(user=team.bob, chat_id=team.chat_b.pk, workspace=team.workspace_a)
