"""Who is calling the REST API, and for which workspace.

Two ways in, tried in this order:
1. ``Authorization: Bearer <token>``: an ApiToken, looked up by its SHA-256 (the plaintext is never
   stored). Unknown or revoked → 401. The request's workspace is the token's workspace.
2. The browser session (DRF's SessionAuthentication, so writes need the CSRF token). The request's
   workspace is the one chosen in the session (tenants.middleware.CurrentWorkspaceMiddleware).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.utils import timezone
from rest_framework.authentication import BaseAuthentication, SessionAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from tenants.models import ApiToken, Membership
from tenants.services import hash_api_token

# last_used_at is for people deciding which tokens to revoke; minute precision is plenty, and writing
# it on every request would turn each read into a write.
LAST_USED_PRECISION = timedelta(minutes=1)


@dataclass(frozen=True)
class TokenAuth:
    """``request.auth`` for a bearer-token request."""

    api_token: ApiToken
    membership: Membership


class ApiTokenAuthentication(BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request: Request) -> tuple[Any, TokenAuth] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None  # not ours: let the session try
        if len(parts) != 2:
            raise AuthenticationFailed("Send the token as 'Authorization: Bearer <token>'.")
        try:
            token = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("Invalid token.") from None
        api_token = (
            ApiToken.objects.select_related("user", "workspace")
            .filter(token_hash=hash_api_token(token))
            .first()
        )
        if api_token is None or api_token.revoked_at is not None or not api_token.user.is_active:
            # One message for unknown and revoked, so a caller can't probe which tokens once existed.
            raise AuthenticationFailed("Invalid or revoked token.")
        membership = (
            Membership.objects.select_related("workspace")
            .filter(workspace_id=api_token.workspace_id, user_id=api_token.user_id)
            .first()
        )
        if membership is None:
            raise AuthenticationFailed("The token's owner is no longer a member of its workspace.")
        self._touch(api_token)
        return api_token.user, TokenAuth(api_token=api_token, membership=membership)

    @staticmethod
    def _touch(api_token: ApiToken) -> None:
        now = timezone.now()
        if api_token.last_used_at is not None and now - api_token.last_used_at < LAST_USED_PRECISION:
            return
        # A bare UPDATE (no save()): concurrent requests with the same token don't race on other fields.
        ApiToken.objects.filter(pk=api_token.pk).update(last_used_at=now)
        api_token.last_used_at = now

    def authenticate_header(self, request: Request) -> str:
        # Present, so DRF answers a missing or bad credential with 401 rather than 403.
        return 'Bearer realm="api"'


class WorkspaceSessionAuthentication(SessionAuthentication):
    """The browser session, CSRF enforced on writes. The workspace comes from the session's choice."""
