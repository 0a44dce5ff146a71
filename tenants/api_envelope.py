"""The REST API's answer shape: one envelope for every response, errors included.

- success: ``{"success": true, "data": ...}``; page/limit lists add
  ``"pagination": {"page", "limit", "total", "totalPages"}``.
- failure: ``{"success": false, "error": {"message", "code", "fields"}}`` with 400/401/403/404/409/422/429
  (``Retry-After``) or a 500 that names no internals.

The renderer adds the success envelope, the exception handler builds the error one, and
``EnvelopeAutoSchema`` tells drf-spectacular about both, so generated clients see what is really sent.
The schema side is in ``tenants.api_schema``. This module is on the ground floor (``tenants``): it knows no other app. Views translate their app's
domain errors into ``ApiError``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.http import Http404
from rest_framework import exceptions
from rest_framework.pagination import BasePagination
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

logger = logging.getLogger(__name__)

SERVER_ERROR_MESSAGE = "Something went wrong on our side. The error was logged; please try again."


class ApiError(exceptions.APIException):
    """A refusal a view explains: its status, a stable ``code`` and per-field messages."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        code: str = "invalid",
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail=message, code=code)
        self.status_code = status
        self.error_code = code
        self.fields = dict(fields or {})


# ---------------------------------------------------------------- responses


def enveloped(
    data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None, **extra: Any
) -> Response:
    """A response whose body is already the full envelope (the renderer leaves it alone)."""
    response = Response({"success": True, "data": data, **extra}, status=status, headers=headers)
    response.enveloped = True  # type: ignore[attr-defined]
    return response


class EnvelopeJSONRenderer(JSONRenderer):
    """Wraps every successful body in ``{"success": true, "data": ...}``; errors arrive already shaped."""

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        response = (renderer_context or {}).get("response")
        if (
            response is not None
            and response.status_code < 400
            and response.status_code != 204
            and not getattr(response, "enveloped", False)
        ):
            data = {"success": True, "data": data}
        return super().render(data, accepted_media_type, renderer_context)


# ---------------------------------------------------------------- errors


def _flatten_detail(detail: Any) -> Any:
    """DRF's nested ErrorDetail structure as plain strings (lists of messages per field)."""
    if isinstance(detail, Mapping):
        return {str(key): _flatten_detail(value) for key, value in detail.items()}
    if isinstance(detail, Sequence) and not isinstance(detail, str):
        return [_flatten_detail(item) for item in detail]
    return str(detail)


def _first_message(detail: Any) -> str:
    if isinstance(detail, Mapping):
        for key, value in detail.items():
            message = _first_message(value)
            if message:
                return message if key == "non_field_errors" else f"{key}: {message}"
        return ""
    if isinstance(detail, Sequence) and not isinstance(detail, str):
        return _first_message(detail[0]) if detail else ""
    return str(detail)


def error_body(message: str, code: str, fields: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"success": False, "error": {"message": message, "code": code, "fields": dict(fields or {})}}


def api_exception_handler(exc: Exception, context: Mapping[str, Any]) -> Response:
    """Every exception a view raises becomes an error envelope; unknown ones a 500 without internals."""
    # Imported here: rest_framework.views reads the API settings, which name this module.
    from rest_framework.views import exception_handler as drf_exception_handler
    from rest_framework.views import set_rollback

    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    if isinstance(exc, ApiError):
        set_rollback()
        return Response(error_body(str(exc.detail), exc.error_code, exc.fields), status=exc.status_code)

    # DRF's own handler turns Http404 / PermissionDenied into API exceptions and sets the
    # WWW-Authenticate and Retry-After headers; we only reshape its body.
    response = drf_exception_handler(exc, dict(context))
    if response is None:
        set_rollback()
        view = context.get("view")
        logger.exception(
            "API %s failed", view.__class__.__name__ if view is not None else "view", exc_info=exc
        )
        return Response(error_body(SERVER_ERROR_MESSAGE, "server_error"), status=500)

    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        if isinstance(detail, Mapping):
            fields = _flatten_detail(detail)
            message = _first_message(detail) or "The request is not valid."
        else:
            fields = {}
            message = _first_message(detail) or "The request is not valid."
        response.data = error_body(message, "validation_error", fields)
        return response

    if isinstance(exc, Http404):
        code, message = "not_found", "Not found."
    elif isinstance(exc, DjangoPermissionDenied):
        code, message = "permission_denied", "You do not have permission to do this."
    elif isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else exc.default_code
        message = _first_message(exc.detail) or str(exc.default_detail)
    else:  # pragma: no cover - drf_exception_handler only answers the types above
        code, message = "error", "The request failed."
    response.data = error_body(message, str(code))
    return response


# ---------------------------------------------------------------- pagination


class PageLimitPagination(BasePagination):
    """``?page=&limit=`` with a total, for lists people page through (chats, members, subscriptions)."""

    default_limit = 25
    max_limit = 100

    def __init__(self) -> None:
        self.page = 1
        self.limit = self.default_limit
        self.total = 0

    @staticmethod
    def _positive_int(request: Request, name: str, default: int, maximum: int | None = None) -> int:
        raw = request.query_params.get(name)
        if raw in (None, ""):
            return default
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise exceptions.ValidationError({name: ["Enter a whole number."]}) from None
        if value < 1 or (maximum is not None and value > maximum):
            bound = f"between 1 and {maximum}" if maximum is not None else "1 or more"
            raise exceptions.ValidationError({name: [f"Must be {bound}."]})
        return value

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> list[Any]:
        self.limit = self._positive_int(request, "limit", self.default_limit, self.max_limit)
        self.page = self._positive_int(request, "page", 1, 1_000_000)
        self.total = queryset.count() if isinstance(queryset, QuerySet) else len(queryset)
        offset = (self.page - 1) * self.limit
        if offset >= self.total:
            return []
        return list(queryset[offset : offset + self.limit])

    def get_paginated_response(self, data: Any) -> Response:
        return enveloped(
            data,
            pagination={
                "page": self.page,
                "limit": self.limit,
                "total": self.total,
                "totalPages": math.ceil(self.total / self.limit) if self.total else 0,
            },
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["success", "data", "pagination"],
            "properties": {
                "success": {"type": "boolean"},
                "data": schema,
                "pagination": {
                    "type": "object",
                    "required": ["page", "limit", "total", "totalPages"],
                    "properties": {
                        "page": {"type": "integer", "minimum": 1},
                        "limit": {"type": "integer", "minimum": 1},
                        "total": {"type": "integer", "minimum": 0},
                        "totalPages": {"type": "integer", "minimum": 0},
                    },
                },
            },
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": "page",
                "in": "query",
                "required": False,
                "description": "Page number, from 1.",
                "schema": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
            },
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "description": f"Items per page (default {self.default_limit}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_limit},
            },
        ]


class Enveloped:
    """Marker for a response serializer that already describes the whole envelope (keyset pages)."""

    is_envelope = True
