"""/api/v1/channels/: everyone reads their workspace's numbers; admins create, change, pause, resume."""

from __future__ import annotations

import pytest

from channels_app.models import Channel, ChannelToken
from channels_app.services import channel_token_read
from tests.api.conftest import assert_error, data_of

pytestmark = pytest.mark.django_db

NEW_WHAPI = {
    "provider": "whapi",
    "display_name": "Sales",
    "phone_number": "+4915112345678",
    "tokens": {"api_token": "whapi-secret-token", "webhook_secret": "hook-secret"},
}


def test_agents_list_their_workspace_channels(bob_api, team):
    channels = data_of(bob_api.get("/channels/"))
    assert [c["id"] for c in channels] == [str(team.channel_a.pk)]


def test_a_channel_shows_which_tokens_it_has_but_never_their_values(bob_api, team):
    from channels_app.services import channel_token_set

    channel_token_set(channel=team.channel_a, token_type="api_token", value="very-secret-value")
    response = bob_api.get(f"/channels/{team.channel_a.pk}/")
    channel = data_of(response)
    assert channel["token_types"] == ["api_token"]
    assert "very-secret-value" not in response.content.decode()
    assert channel["webhook_url"].endswith(f"/webhooks/whapi/{team.channel_a.pk}/")


def test_charlie_gets_404_for_a_channel_of_workspace_a(charlie_api, team):
    assert_error(charlie_api.get(f"/channels/{team.channel_a.pk}/"), 404)
    assert_error(charlie_api.patch(f"/channels/{team.channel_a.pk}/", {"display_name": "Mine"}), 404)
    assert_error(charlie_api.post(f"/channels/{team.channel_a.pk}/pause/"), 404)
    assert_error(charlie_api.post(f"/channels/{team.channel_a.pk}/resume/"), 404)


def test_an_admin_creates_a_channel_with_write_only_tokens(alice_api, team):
    response = alice_api.post("/channels/", NEW_WHAPI)
    channel = data_of(response, 201)
    assert channel["display_name"] == "Sales"
    assert channel["token_types"] == ["api_token", "webhook_secret"]
    assert "whapi-secret-token" not in response.content.decode()
    created = Channel.objects.get(pk=channel["id"])
    assert created.workspace == team.workspace_a
    assert channel_token_read(channel=created, token_type="api_token") == "whapi-secret-token"


def test_creating_a_channel_validates_its_fields(alice_api):
    error = assert_error(alice_api.post("/channels/", {"provider": "telegram", "display_name": ""}), 400)
    assert {"provider", "display_name", "phone_number"} <= set(error["fields"])


def test_a_meta_channel_needs_its_phone_number_id(alice_api):
    error = assert_error(alice_api.post("/channels/", {**NEW_WHAPI, "provider": "meta"}), 400)
    assert "meta_phone_number_id" in error["fields"]


def test_the_plan_limit_on_numbers_is_a_400(alice_api, team):
    team.workspace_a.max_channels = 1
    team.workspace_a.save(update_fields=["max_channels"])
    assert "plan limit" in assert_error(alice_api.post("/channels/", NEW_WHAPI), 400)["message"]


def test_agents_cannot_create_change_pause_or_resume_channels(bob_api, team):
    assert_error(bob_api.post("/channels/", NEW_WHAPI), 403)
    assert_error(bob_api.patch(f"/channels/{team.channel_a.pk}/", {"display_name": "x"}), 403)
    assert_error(bob_api.post(f"/channels/{team.channel_a.pk}/pause/"), 403)
    assert_error(bob_api.post(f"/channels/{team.channel_a.pk}/resume/"), 403)


def test_an_admin_renames_a_channel_and_rotates_a_token(alice_api, team):
    response = alice_api.patch(
        f"/channels/{team.channel_a.pk}/",
        {"display_name": "Support EU", "rate_limit_per_second": 2.5, "tokens": {"api_token": "rotated"}},
    )
    channel = data_of(response)
    assert channel["display_name"] == "Support EU"
    assert channel["rate_limit_per_second"] == 2.5
    assert "rotated" not in response.content.decode()
    assert ChannelToken.objects.filter(channel=team.channel_a, token_type="api_token").exists()
    assert channel_token_read(channel=team.channel_a, token_type="api_token") == "rotated"


def test_patching_a_channel_validates_its_fields(alice_api, team):
    error = assert_error(
        alice_api.patch(
            f"/channels/{team.channel_a.pk}/", {"display_name": "  ", "rate_limit_per_second": -1}
        ),
        400,
    )
    assert {"display_name", "rate_limit_per_second"} <= set(error["fields"])


def test_an_admin_pauses_and_resumes_a_channel(alice_api, team):
    paused = data_of(alice_api.post(f"/channels/{team.channel_a.pk}/pause/"))
    assert paused["status"] == "paused"
    resumed = data_of(alice_api.post(f"/channels/{team.channel_a.pk}/resume/"))
    assert resumed["status"] == "connected"


def test_pausing_with_a_bad_until_is_a_400(alice_api, team):
    error = assert_error(alice_api.post(f"/channels/{team.channel_a.pk}/pause/", {"until": "tomorrow"}), 400)
    assert "until" in error["fields"]
