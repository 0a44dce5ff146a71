"""The answer shape every endpoint shares: envelopes, pagination, 429 with Retry-After, a bare 500."""

from __future__ import annotations

import pytest

from tests.api.conftest import assert_error, data_of
from tests.factories import ChatFactory

pytestmark = pytest.mark.django_db


def test_a_list_carries_page_limit_total_and_total_pages(alice_api, team):
    for _ in range(4):
        ChatFactory(channel=team.channel_a)
    body = alice_api.get("/chats/", {"limit": 2, "page": 2}).json()
    assert body["success"] is True
    assert len(body["data"]) == 2
    assert body["pagination"] == {"page": 2, "limit": 2, "total": 5, "totalPages": 3}


def test_a_page_past_the_end_is_empty_not_an_error(alice_api):
    body = alice_api.get("/chats/", {"page": 50}).json()
    assert body["data"] == []
    assert body["pagination"]["total"] == 1


def test_a_bad_page_or_limit_is_a_400_naming_the_parameter(alice_api):
    assert assert_error(alice_api.get("/chats/", {"limit": 0}), 400, "validation_error")["fields"] == {
        "limit": ["Must be between 1 and 100."]
    }
    assert "page" in assert_error(alice_api.get("/chats/", {"page": "two"}), 400)["fields"]


def test_a_missing_object_is_a_404_envelope(alice_api):
    assert_error(alice_api.get("/chats/999999/"), 404, "not_found")


def test_an_id_beyond_the_database_range_is_a_404_not_a_crash(alice_api):
    assert_error(alice_api.get(f"/chats/{2**70}/"), 404, "not_found")


def test_an_unexpected_error_is_a_500_that_names_no_internals(alice_api, monkeypatch):
    def explode(**kwargs):
        raise RuntimeError("connection string postgres://secret@db/internal")

    monkeypatch.setattr("inbox.api.chat_api_list", explode)
    response = alice_api.get("/chats/")
    error = assert_error(response, 500, "server_error")
    assert "secret" not in response.content.decode()
    assert "RuntimeError" not in response.content.decode()
    assert error["fields"] == {}


def test_the_per_token_limit_answers_429_with_retry_after(alice_api, bob_api, settings):
    settings.API_RATE_LIMIT = "3/minute"
    for _ in range(3):
        data_of(alice_api.get("/channels/"))
    response = alice_api.get("/channels/")
    assert_error(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0
    # Per token: bob's token has its own allowance.
    data_of(bob_api.get("/channels/"))


@pytest.mark.parametrize(
    "body",
    [b'{"text": "unterminated', b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"],
    ids=["malformed", "nested-too-deep"],
)
def test_a_body_that_is_not_readable_json_is_a_400_parse_error(alice_api, team, body):
    response = alice_api.post(f"/chats/{team.chat_a.pk}/messages/", body)
    assert_error(response, 400, "parse_error")
