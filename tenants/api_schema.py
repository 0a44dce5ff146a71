"""The OpenAPI side of the API envelope (drf-spectacular): wrapped 2xx bodies, documented errors,
and the security schemes of our authentication classes."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent, get_override, is_list_serializer

ERROR_ENVELOPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["success", "error"],
    "properties": {
        "success": {"type": "boolean", "description": "Always false here."},
        "error": {
            "type": "object",
            "required": ["message", "code", "fields"],
            "properties": {
                "message": {"type": "string"},
                "code": {"type": "string"},
                "fields": {
                    "type": "object",
                    "additionalProperties": True,
                    "description": "Messages per input field (a list, or nested for objects).",
                },
            },
        },
    },
}


_RETRY_AFTER_HEADER = {
    "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait before trying again."}
}
_DEFAULT_ERRORS = {
    "400": "The request is not valid (see error.fields).",
    "401": "Missing, invalid or revoked credentials.",
    "403": "Your role does not allow this, or the session's CSRF token is missing.",
    "429": "Too many requests for this token.",
}


class EnvelopeAutoSchema(AutoSchema):
    """drf-spectacular, told about the envelope: 2xx bodies are wrapped, error answers are documented."""

    def _get_response_for_code(
        self, serializer: Any, status_code: str, media_types: Any = None, direction: Any = "response"
    ) -> dict[str, Any]:
        response: dict[str, Any] = super()._get_response_for_code(
            serializer, status_code, media_types, direction
        )
        if not ("200" <= status_code < "300") or "content" not in response:
            return response
        if getattr(serializer, "is_envelope", False):
            return response
        paginated = (
            self._get_paginator() is not None
            and self._is_list_view(serializer)
            and get_override(serializer, "many") is not False
        ) or (is_list_serializer(serializer) and self._get_paginator() is not None)
        if paginated:
            return response
        for media in response["content"].values():
            media["schema"] = {
                "type": "object",
                "required": ["success", "data"],
                "properties": {"success": {"type": "boolean"}, "data": media["schema"]},
            }
        return response

    def _get_serializer_name(self, serializer: Any, direction: Any, bypass_extensions: bool = False) -> str:
        # Views nest their serializers (``ChannelDetailApi.InputSerializer``): name components after the
        # view, or every view's "Input" would collide.
        name = str(super()._get_serializer_name(serializer, direction, bypass_extensions))
        qualname = type(serializer).__qualname__
        if "." in qualname:
            owner = qualname.split(".")[0].removesuffix("Api")
            name = owner + name
        return name

    def _error_schema_ref(self) -> dict[str, Any]:
        component = ResolvedComponent(
            name="ErrorEnvelope",
            type=ResolvedComponent.SCHEMA,
            object="ErrorEnvelope",
            schema=ERROR_ENVELOPE_SCHEMA,
        )
        self.registry.register_on_missing(component)
        return dict(component.ref)

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        errors = dict(_DEFAULT_ERRORS)
        # Views name their extra refusals per method: ``api_errors = {"POST": {"409": "why"}}``.
        errors.update(getattr(self.view, "api_errors", {}).get(self.method, {}))
        if "{" in self.path:
            errors["404"] = "Not found, or not in your workspace."
        for code, description in errors.items():
            if code in responses:
                continue
            entry = self._get_response_for_code(self._error_schema_ref(), code, direction=direction)
            entry["description"] = description
            if code == "429":
                entry["headers"] = _RETRY_AFTER_HEADER
            responses[code] = entry
        return responses


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.authentication.ApiTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token (manage.py apitoken_create).",
        }


class WorkspaceSessionScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.authentication.WorkspaceSessionAuthentication"
    name = "cookieAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {"type": "apiKey", "in": "cookie", "name": settings.SESSION_COOKIE_NAME}
