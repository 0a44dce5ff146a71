"""Bearer-token clients for the REST API tests: alice (admin of A), bob (agent of A), charlie (admin of B)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from tenants.services import apitoken_create

API = "/api/v1"


@dataclass
class ApiClient:
    """A Django test client that sends JSON with a bearer token."""

    token: str
    user: Any
    client: Client

    def _headers(self) -> dict[str, str]:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.token}"}

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.client.get(API + path, params or {}, **self._headers())

    def post(self, path: str, data: Any = None) -> Any:
        return self.client.post(
            API + path, data if data is not None else {}, content_type="application/json", **self._headers()
        )

    def patch(self, path: str, data: Any) -> Any:
        return self.client.patch(API + path, data, content_type="application/json", **self._headers())

    def delete(self, path: str) -> Any:
        return self.client.delete(API + path, **self._headers())


def api_client_for(user: Any, workspace: Any) -> ApiClient:
    issued = apitoken_create(workspace=workspace, user=user, name="tests")
    return ApiClient(token=issued.token, user=user, client=Client())


@pytest.fixture
def alice_api(team: Any) -> ApiClient:
    return api_client_for(team.alice, team.workspace_a)


@pytest.fixture
def bob_api(team: Any) -> ApiClient:
    return api_client_for(team.bob, team.workspace_a)


@pytest.fixture
def charlie_api(team: Any) -> ApiClient:
    return api_client_for(team.charlie, team.workspace_b)


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The error envelope, with the expected status (and code). Returns the ``error`` object."""
    assert response.status_code == status, response.content
    body = response.json()
    assert body["success"] is False
    assert set(body["error"]) == {"message", "code", "fields"}
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


def data_of(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["success"] is True
    return body["data"]
