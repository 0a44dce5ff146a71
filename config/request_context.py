"""The request id (correlation id) and workspace id carried through a request, its tasks and its logs.

The id comes from ``X-Request-ID`` when a proxy sets one (else a new one), is echoed in the response,
travels into Celery tasks as a message header, and is stamped on every log line.
"""

from __future__ import annotations

import contextvars
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.http import HttpRequest, HttpResponse

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
workspace_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("workspace_id", default="")

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
CELERY_HEADER = "correlation_id"


def new_request_id() -> str:
    return uuid.uuid4().hex


def current_request_id() -> str:
    return request_id_var.get()


@contextmanager
def correlation(request_id: str | None, workspace_id: Any = None) -> Iterator[str]:
    """Bind a correlation id (and workspace) for a block: a task, a webhook event's processing."""
    rid = request_id or new_request_id()
    token = request_id_var.set(rid)
    ws_token = workspace_id_var.set(str(workspace_id or ""))
    try:
        yield rid
    finally:
        request_id_var.reset(token)
        workspace_id_var.reset(ws_token)


def bind_workspace(workspace_id: Any) -> None:
    workspace_id_var.set(str(workspace_id or ""))


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        rid = incoming if _SAFE_REQUEST_ID.match(incoming) else new_request_id()
        request.request_id = rid  # type: ignore[attr-defined]
        with correlation(rid):
            response = self.get_response(request)
        response["X-Request-ID"] = rid
        return response
