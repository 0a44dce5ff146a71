"""The REST API's rate limit: per token (per user for session callers), counted in the shared cache."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from tenants.authentication import TokenAuth


class ApiTokenRateThrottle(SimpleRateThrottle):
    scope = "api_token"

    def get_rate(self) -> str | None:
        # Read at each request (not frozen at import like DRF's THROTTLE_RATES), so it can be tuned by
        # settings and tests.
        return str(getattr(settings, "API_RATE_LIMIT", "600/minute"))

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if isinstance(request.auth, TokenAuth):
            token = request.auth.api_token
            # The hash prefix as well as the id: ids restart in a fresh database (tests, restores),
            # a token's hash never repeats, so an old count can't leak onto a new token.
            ident = f"token:{token.pk}:{token.token_hash[:16]}"
        elif getattr(request.user, "is_authenticated", False):
            ident = f"user:{request.user.pk}"
        else:
            return None  # anonymous callers are refused before this matters
        return f"throttle:{self.scope}:{ident}"
