from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from config.request_context import bind_workspace
from tenants.selectors import current_membership

SESSION_WORKSPACE_KEY = "workspace_id"


class CurrentWorkspaceMiddleware:
    """Sets ``request.membership`` / ``request.workspace`` from the workspace chosen in this session."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        membership = current_membership(request.user, request.session.get(SESSION_WORKSPACE_KEY))
        request.membership = membership  # type: ignore[attr-defined]
        request.workspace = membership.workspace if membership else None  # type: ignore[attr-defined]
        if membership is not None:
            bind_workspace(membership.workspace_id)
        return self.get_response(request)
