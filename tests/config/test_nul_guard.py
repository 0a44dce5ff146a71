"""A NUL character in a page's query parameter or form field is a 400, never a database error."""

from __future__ import annotations

import pytest
from django.test import Client

from inbox.models import Message
from tests.conftest import Team

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}


def test_a_form_field_with_a_nul_character_is_refused_and_nothing_is_written(
    bob_client: Client, team: Team
) -> None:
    before = Message.objects.count()
    response = bob_client.post(
        f"/inbox/chats/{team.chat_a.pk}/send/", {"text": "a\x00b", "client_message_id": "nul-1"}, **HX
    )
    assert response.status_code == 400
    assert Message.objects.count() == before


def test_a_query_parameter_with_a_nul_character_is_refused(alice_client: Client, team: Team) -> None:
    assert alice_client.get("/inbox/chats/", {"cursor": "\x00"}, **HX).status_code == 400
    assert alice_client.get("/admin/inbox/chat/", {"q": "\x00"}).status_code == 400


def test_the_api_answers_nul_characters_with_its_own_field_errors(alice_client: Client, team: Team) -> None:
    response = alice_client.get("/api/v1/chats/", {"q": "\x00"})
    assert response.status_code == 400
    assert response.json()["success"] is False
