"""The shared fixture trio (as in Healthchecks' hc/test.py): alice and bob in workspace A, charlie in B."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from tenants.models import Membership
from tests.factories import (
    ChannelFactory,
    ChatFactory,
    MembershipFactory,
    MessageFactory,
    UserFactory,
    WorkspaceFactory,
)


@dataclass
class Team:
    workspace_a: Any
    workspace_b: Any
    alice: Any  # admin of A (staff, so Django admin works)
    bob: Any  # agent of A
    charlie: Any  # admin of B
    channel_a: Any
    channel_b: Any
    chat_a: Any
    chat_b: Any
    message_a: Any
    message_b: Any


@pytest.fixture
def team(db: Any) -> Team:
    workspace_a = WorkspaceFactory(name="Alpha Co", slug="alpha")
    workspace_b = WorkspaceFactory(name="Beta Co", slug="beta")
    alice = UserFactory(username="alice@example.com", is_staff=True)
    bob = UserFactory(username="bob@example.com")
    charlie = UserFactory(username="charlie@example.com", is_staff=True)
    MembershipFactory(workspace=workspace_a, user=alice, role=Membership.Role.ADMIN)
    MembershipFactory(workspace=workspace_a, user=bob, role=Membership.Role.AGENT)
    MembershipFactory(workspace=workspace_b, user=charlie, role=Membership.Role.ADMIN)
    channel_a = ChannelFactory(workspace=workspace_a, display_name="Alpha support")
    channel_b = ChannelFactory(workspace=workspace_b, display_name="Beta support")
    chat_a = ChatFactory(channel=channel_a, contact_name="Ana Customer")
    chat_b = ChatFactory(channel=channel_b, contact_name="Ben Customer")
    return Team(
        workspace_a=workspace_a,
        workspace_b=workspace_b,
        alice=alice,
        bob=bob,
        charlie=charlie,
        channel_a=channel_a,
        channel_b=channel_b,
        chat_a=chat_a,
        chat_b=chat_b,
        message_a=MessageFactory(chat=chat_a),
        message_b=MessageFactory(chat=chat_b),
    )


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alice_client(team: Team) -> Client:
    return client_for(team.alice)


@pytest.fixture
def bob_client(team: Team) -> Client:
    return client_for(team.bob)


@pytest.fixture
def charlie_client(team: Team) -> Client:
    return client_for(team.charlie)


@pytest.fixture
def fake_provider() -> Any:
    """The project's fake Whapi/Meta server on a free port, over real HTTP (channels_app.providers.fake_server)."""
    from channels_app.providers.fake_server import FakeProvider

    server = FakeProvider().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_cache(settings: Any) -> None:
    """Sign-in lock-outs and API rate limits live in the cache (Redis, shared by the xdist workers):
    each test gets its own key prefix instead of flushing a database other workers are using."""
    import uuid

    settings.CACHES = {
        name: {**config, "KEY_PREFIX": f"test-{uuid.uuid4().hex}"} for name, config in settings.CACHES.items()
    }


@pytest.fixture(autouse=True)
def _fresh_channel_layer() -> Any:
    """A new channel-layer instance per test. channels-redis keeps asyncio locks on the instance, and
    each test's async_to_sync runs on a new event loop: a receive left pending on an old loop would
    hold a lock the next test's loop cannot take ("bound to a different event loop")."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()
