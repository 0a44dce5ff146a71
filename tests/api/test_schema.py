"""The OpenAPI contract: served, valid, with local docs; and the API fuzzed against it (schemathesis).

The fuzz runs in the test suite against the Django app in-process (WSGI), authenticated with a real
admin token of workspace A, over the team fixture's data. Half of the generated path ids are swapped
for real objects, so fuzzed bodies reach real chats, channels, members and subscriptions, not only 404s.
Checks: no 5xx, and every response (errors included) matches the schema. Each xdist worker runs it in
its own test database with its own tokens, so it is safe under ``pytest -n 2``.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from outbox.subscriptions import subscription_create
from tenants.models import Membership
from tenants.services import apitoken_create

pytestmark = pytest.mark.django_db

SCHEMA_PATH = "/api/v1/schema/"


def test_the_schema_is_served_as_openapi_3(client):
    response = client.get(SCHEMA_PATH, HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    paths = set(schema["paths"])
    assert {
        "/api/v1/channels/",
        "/api/v1/channels/{id}/pause/",
        "/api/v1/chats/",
        "/api/v1/chats/{id}/messages/",
        "/api/v1/messages/{id}/",
        "/api/v1/members/{id}/",
        "/api/v1/subscriptions/{id}/rotate-secret/",
    } <= paths
    send = schema["paths"]["/api/v1/chats/{id}/messages/"]["post"]["responses"]
    assert {"202", "400", "401", "403", "404", "409", "422", "429"} <= set(send)
    assert "Retry-After" in send["429"]["headers"]
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token (manage.py apitoken_create).",
    }


def test_the_docs_page_loads_its_assets_from_this_site(client):
    response = client.get("/api/v1/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui-bundle.js" in html
    assert "/static/drf_spectacular_sidecar/" in html
    assert "cdn" not in html.lower()
    assert "<script>" not in html  # the init script is a separate file: the CSP forbids inline script
    assert client.get("/api/v1/docs/?script=").status_code == 200
    assert "/static/drf_spectacular_sidecar/" in client.get("/api/v1/redoc/").content.decode()


@pytest.fixture
def api_schema(team: Any, settings: Any) -> Any:
    settings.API_RATE_LIMIT = "1000000/minute"  # the fuzz is one token's burst; the limit has its own test
    settings.OUTBOX_AUTO_DRAIN = False
    # Django's test client stops request_finished from closing the connection mid-test; the WSGI app
    # used here needs the same, or the test transaction would be closed under us.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    schema = schemathesis.openapi.from_wsgi(SCHEMA_PATH, WSGIHandler())
    yield schema
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def seeded(team: Any) -> dict[str, Any]:
    subscription = subscription_create(
        workspace=team.workspace_a, url="https://crm.example.com/hook", event_types=["chat.updated"]
    ).subscription
    return {
        "token": apitoken_create(workspace=team.workspace_a, user=team.alice, name="fuzz").token,
        "ids": {
            "channels": str(team.channel_a.pk),
            "chats": team.chat_a.pk,
            "messages": team.message_a.pk,
            "members": Membership.objects.get(user=team.bob).pk,
            "subscriptions": subscription.pk,
        },
    }


# A fixed budget per operation and mode keeps the whole fuzz well under a minute on a small machine.
EXAMPLES_PER_OPERATION = 10
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    database=None,  # nothing written under .hypothesis/: parallel workers don't share a file
    derandomize=True,  # the same cases every run: a failure here is reproducible, never flaky
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def _fuzz_operation(operation: Any, mode: GenerationMode, seeded: dict[str, Any]) -> None:
    @FUZZ_SETTINGS
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        path_id = case.path_parameters.get("id") if case.path_parameters else None
        if path_id is not None and len(str(path_id)) % 2 == 0:
            # Half the ids become real objects of workspace A, so fuzzed input reaches the services.
            case.path_parameters["id"] = seeded["ids"][case.path.split("/")[3]]
        case.call_and_validate(
            headers={"Authorization": f"Bearer {seeded['token']}"},
            checks=[not_a_server_error, response_schema_conformance],
        )

    run()


def test_the_api_honours_its_schema_under_fuzzing(api_schema: Any, seeded: dict[str, Any]) -> None:
    """Every operation, valid and invalid input: no 5xx, and every answer matches the schema."""
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            # Each operation starts from the seeded data: a fuzzed DELETE /members/ that removes alice
            # (and so revokes the token) must not turn every later operation into a 401.
            block = transaction.atomic()
            block._from_testcase = True  # like TestCase's own blocks: the views' durable atomics nest in it
            with block:
                try:
                    _fuzz_operation(operation, mode, seeded)
                except Exception as error:  # collect all, so one run names every broken operation
                    failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {error}")
                transaction.set_rollback(True)
    assert not failures, "\n\n".join(failures)
