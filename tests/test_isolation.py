"""Generated tenant-isolation test: every route the URL resolver knows, visited by charlie (workspace B)
with workspace A's objects in its parameters, must answer 403/404 (or admin's "doesn't exist"
redirect), show none of A's data, and change none of A's rows.

The routes come from the resolver and the websocket router, so a new route fails this test until its
parameters are mapped below (and a route whose parameters are mapped but unchecked fails it for real).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib import admin
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from channels_app.services import channel_token_set
from inbox.models import Chat, Message
from outbox.models import EventSubscription, OutboxMessage
from outbox.subscriptions import subscription_create
from tenants.models import ApiToken, AuditLog, Membership
from tenants.services import apitoken_create
from webhooks.models import WebhookEvent

# Routes that hold no tenant data, with the reason. Anything else must be checked.
PUBLIC_ROUTES = {
    "": "redirects to the inbox or the sign-in page",
    "healthz": "process liveness, no data",
    "readyz": "dependency checks, no tenant data",
    "metrics": "operator endpoint: token or allow-list (tested in tests/config/test_metrics.py)",
    "accounts/login/": "sign-in form",
    "accounts/logout/": "sign-out",
    "api/v1/schema/": "the public API contract",
    "api/v1/docs/": "the public API contract",
    "api/v1/redoc/": "the public API contract",
    "admin/": "admin index: lists models, not rows",
    "admin/login/": "sign-in form",
    "admin/logout/": "sign-out",
    "admin/password_change/": "the user's own password",
    "admin/password_change/done/": "the user's own password",
    "admin/autocomplete/": "scoped by each ModelAdmin's get_queryset (tested in tests/tenants/test_admin.py)",
    "admin/jsi18n/": "translations",
    "admin/r/<path:content_type_id>/<path:object_id>/": "view-on-site redirect, no model here defines one",
    "admin/(?P<url>.*)$": "admin's catch-all: redirects to the admin index",
}
PROJECT_APPS = {"tenants", "channels_app", "inbox", "outbox", "webhooks"}


def is_public(route: str) -> bool:
    # The admin app index lists an app's models, never their rows.
    return route in PUBLIC_ROUTES or route.startswith("admin/^(?P<app_label>")


# Provider-facing routes: isolation means another workspace's secret cannot post to A's number.
WEBHOOK_ROUTES = {
    "webhooks/whapi/<uuid:channel_id>/",
    "webhooks/meta/<uuid:channel_id>/",
    "webhooks/meta/",
    "webhooks/sandbox/<uuid:channel_id>/",
}


def walk(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            yield prefix + str(pattern.pattern), pattern


ALL_ROUTES = sorted({route for route, _ in walk(get_resolver().url_patterns)})


@dataclass
class WorkspaceA:
    objects: dict[str, Any]  # a parameter's meaning → workspace A's object
    secrets: list[str]  # strings only workspace A's pages could contain


@pytest.fixture
def workspace_a(team: Any) -> WorkspaceA:
    from inbox.models import Contact

    subscription = subscription_create(
        workspace=team.workspace_a, url="https://crm.alpha.example/hook", event_types=["message.created"]
    ).subscription
    outbox_row = OutboxMessage.objects.create(
        channel=team.channel_a,
        chat=team.chat_a,
        message=team.message_a,
        message_type="text",
        payload={},
        next_attempt_at=timezone.now(),
    )
    objects = {
        "workspace": team.workspace_a,
        "membership": Membership.objects.get(user=team.bob, workspace=team.workspace_a),
        "channel": team.channel_a,
        "chat": team.chat_a,
        "message": team.message_a,
        "contact": Contact.objects.create(channel=team.channel_a, wa_id="15550009", name="Ana Contact"),
        "outboxmessage": outbox_row,
        "webhookevent": WebhookEvent.objects.create(provider="whapi", channel=team.channel_a, raw_body=b"{}"),
        "apitoken": apitoken_create(workspace=team.workspace_a, user=team.alice).api_token,
        "auditlog": AuditLog.objects.create(workspace=team.workspace_a, action="alpha.secret-action"),
        "eventsubscription": subscription,
    }
    secrets = [
        "Ana Customer",
        "Alpha support",
        "Alpha Co",
        "alice@example.com",
        "bob@example.com",
        team.message_a.text,
        "crm.alpha.example",
        "alpha.secret-action",
    ]
    return WorkspaceA(objects=objects, secrets=secrets)


def parameter_object(route: str, name: str, a: WorkspaceA) -> Any:
    """What a route parameter points at. New parameter names must be added here."""
    if name in {"chat_id", "channel_id", "message_id"}:
        return a.objects[name.removesuffix("_id")]
    if name == "pk" and route.startswith("api/v1/"):
        resource = route.split("/")[2]
        return a.objects[
            {
                "channels": "channel",
                "chats": "chat",
                "messages": "message",
                "members": "membership",
                "subscriptions": "eventsubscription",
            }[resource]
        ]
    if name in {"object_id", "id"} and route.startswith("admin/"):
        app_label, model_name = route.split("/")[1:3]
        if app_label in PROJECT_APPS:
            return a.objects[model_name]
        # Not tenant data (users, beat schedules): superusers only, so any row will do.
        return a.objects["membership"].user if model_name == "user" else SimpleNamespace(pk=1)
    raise LookupError(f"route {route!r}: no workspace-A object is known for parameter <{name}>; map it here")


def fill(route: str, a: WorkspaceA) -> str:
    def value(match: re.Match[str]) -> str:
        return str(parameter_object(route, match.group(2), a).pk)

    return "/" + re.sub(r"<(?:(\w+):)?(\w+)>", value, route)


def snapshot(team: Any) -> dict[str, Any]:
    """Everything charlie might try to change in workspace A."""
    chat = Chat.objects.get(pk=team.chat_a.pk)
    return {
        "chat": (chat.status, chat.assignee_id, chat.unread_count, chat.last_read_at),
        "messages": Message.objects.filter(chat__workspace=team.workspace_a).count(),
        "outbox": list(
            OutboxMessage.objects.filter(channel__workspace=team.workspace_a).values_list(
                "status", "attempts"
            )
        ),
        "memberships": list(
            Membership.objects.filter(workspace=team.workspace_a).values_list("user_id", "role")
        ),
        "channel": list(team.workspace_a.channels.values_list("status", "display_name")),
        "subscriptions": list(
            EventSubscription.objects.filter(workspace=team.workspace_a).values_list(
                "url", "active", "encrypted_secret"
            )
        ),
        "tokens": list(
            ApiToken.objects.filter(workspace=team.workspace_a).values_list("revoked_at", flat=True)
        ),
        "events": list(
            WebhookEvent.objects.filter(channel__workspace=team.workspace_a).values_list("status", flat=True)
        ),
    }


def assert_no_leak(route: str, method: str, response: Any, a: WorkspaceA) -> None:
    body = response.content.decode(errors="replace")
    for secret in a.secrets:
        assert secret not in body, f"{method} /{route} showed charlie workspace A's {secret!r}"


def charlie_clients(team: Any) -> list[tuple[str, Client, dict[str, str]]]:
    browser = Client()
    browser.force_login(team.charlie)
    api = Client()
    token = apitoken_create(workspace=team.workspace_b, user=team.charlie).token
    return [("session", browser, {}), ("token", api, {"HTTP_AUTHORIZATION": f"Bearer {token}"})]


@pytest.mark.django_db
def test_every_route_is_either_checked_public_or_a_webhook() -> None:
    """Guards the generator itself: the resolver's list is what the test below walks."""
    assert "inbox/chats/<int:chat_id>/" in ALL_ROUTES and "api/v1/chats/<int:pk>/" in ALL_ROUTES
    assert set(PUBLIC_ROUTES) <= set(ALL_ROUTES), set(PUBLIC_ROUTES) - set(ALL_ROUTES)
    assert any(route.startswith("admin/^(?P<app_label>") for route in ALL_ROUTES)
    assert set(ALL_ROUTES) >= WEBHOOK_ROUTES


@pytest.mark.django_db
def test_charlie_gets_nothing_of_workspace_a_on_any_route(team: Any, workspace_a: WorkspaceA) -> None:
    before = snapshot(team)
    checked: list[str] = []
    for route in ALL_ROUTES:
        if is_public(route) or route in WEBHOOK_ROUTES:
            continue
        url = fill(route, workspace_a)
        has_object = "<" in route
        for how, client, headers in charlie_clients(team):
            if how == "token" and not route.startswith("api/"):
                continue  # pages and admin are session-only; a token there is just an anonymous visitor
            for method in ("get", "post", "patch", "delete"):
                response = getattr(client, method)(url, **headers)
                assert_no_leak(route, method.upper(), response, workspace_a)
                if has_object:
                    ok = response.status_code in (403, 404, 405) or (
                        # admin answers a row outside the admin's scope with "doesn't exist" + its index;
                        # admin/<app>/<model>/<id>/ only redirects to the change page, checked on its own.
                        response.status_code == 302 and response.url in ("/admin/", url + "change/")
                    )
                    assert ok, (
                        f"{how} {method.upper()} {url} answered {response.status_code} {getattr(response, 'url', '')} to charlie"
                    )
        checked.append(route)
    assert snapshot(team) == before, "charlie's requests changed workspace A's data"
    assert any(r.startswith("inbox/") for r in checked) and any(r.startswith("api/v1/") for r in checked)
    assert any(r.startswith("admin/") for r in checked)


@pytest.mark.django_db
def test_admin_routes_cover_every_registered_project_model(workspace_a: WorkspaceA) -> None:
    registered = {m._meta.model_name for m in admin.site._registry if m._meta.app_label in PROJECT_APPS}
    assert registered <= set(workspace_a.objects), registered - set(workspace_a.objects)


@pytest.mark.django_db
def test_another_workspaces_secret_cannot_post_to_a_number(
    team: Any, workspace_a: WorkspaceA, settings: Any
) -> None:
    """Webhook routes: charlie's number's secrets, used against A's number, are refused and store nothing."""
    import hmac

    channel_token_set(channel=team.channel_b, token_type="webhook_secret", value="beta-webhook-secret")
    channel_token_set(channel=team.channel_b, token_type="app_secret", value="beta-app-secret")
    channel_token_set(channel=team.channel_a, token_type="webhook_secret", value="alpha-webhook-secret")
    channel_token_set(channel=team.channel_a, token_type="app_secret", value="alpha-app-secret")
    body = b'{"messages": [], "event": {"type": "messages", "event": "post"}}'
    meta_signature = "sha256=" + hmac.new(b"beta-app-secret", body, hashlib.sha256).hexdigest()
    before = WebhookEvent.objects.count()
    client = Client()
    for route in sorted(WEBHOOK_ROUTES):
        url = "/" + route.replace("<uuid:channel_id>", str(team.channel_a.pk))
        response = client.post(
            url,
            body,
            content_type="application/json",
            HTTP_AUTHORIZATION="Bearer beta-webhook-secret",
            HTTP_X_HUB_SIGNATURE_256=meta_signature,
        )
        # The one-app Meta route uses META_APP_SECRET, which charlie's number does not have either.
        assert response.status_code in (401, 403, 404), (
            f"POST {url} with B's secret answered {response.status_code}"
        )
    assert WebhookEvent.objects.count() == before


WEBSOCKET_CHECKS = {"ws/inbox/"}


@pytest.mark.django_db(transaction=True)
def test_every_websocket_route_keeps_charlie_out_of_workspace_a(team: Any) -> None:
    from config.asgi import application
    from config.routing import websocket_urlpatterns
    from inbox.models import Message
    from inbox.realtime import push_message_created, push_message_updated, push_messages_updated
    from inbox.services import chat_assign
    from tests.factories import MessageFactory

    routes = {str(p.pattern) for p in websocket_urlpatterns}
    assert routes == WEBSOCKET_CHECKS, f"add an isolation check for {routes - WEBSOCKET_CHECKS}"

    browser = Client()
    browser.force_login(team.charlie)
    cookie = f"sessionid={browser.cookies['sessionid'].value}".encode()

    def busy_workspace_a() -> None:
        chat_assign(chat=team.chat_a, agent=team.bob, acting_user=team.alice)
        message = MessageFactory(chat=team.chat_a, text="private to A")
        push_message_created(message, team.chat_a)
        push_message_updated(message)
        push_messages_updated([Message.objects.select_related("channel").get(pk=message.pk)])

    async def scenario(path: str) -> None:
        socket = WebsocketCommunicator(
            application,
            "/" + path,
            headers=[(b"origin", b"http://testserver"), (b"host", b"testserver"), (b"cookie", cookie)],
        )
        connected, _ = await socket.connect(timeout=3)
        assert connected
        await socket.send_json_to({"action": "open_chat", "chat_id": team.chat_a.pk})
        await socket.send_json_to(
            {"action": "sync", "chat_id": team.chat_a.pk, "since": "2000-01-01T00:00:00+00:00"}
        )
        await database_sync_to_async(busy_workspace_a)()
        frames = []
        while not await socket.receive_nothing(timeout=0.5):
            frames.append(await socket.receive_from(timeout=1))
        leaked = [
            f
            for f in frames
            if "private to A" in f or "Ana Customer" in f or f'data-chat-id="{team.chat_a.pk}"' in f
        ]
        assert not leaked, leaked[:1]
        await socket.disconnect()

    for path in sorted(routes):
        async_to_sync(scenario)(path)
