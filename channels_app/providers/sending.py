"""HTTP plumbing shared by the provider transports: sessions, timeouts, Retry-After, network errors.

Nothing here knows a provider's JSON; each transport maps its own error bodies.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import requests

from channels_app.providers.base import FailureKind, TransportError

# (connect, read) seconds. A send that takes longer than this is treated as a transient failure; it may
# still have reached the provider, which is why the outbox can (rarely) send a message twice.
DEFAULT_TIMEOUT: tuple[float, float] = (3.05, 20.0)

# Without a Retry-After header we wait a minute before trying a rate-limited number again.
DEFAULT_RETRY_AFTER = 60.0

_local = threading.local()


def http_session() -> requests.Session:
    """One keep-alive session per thread (requests.Session is not thread-safe; reusing connections matters
    when a drain sends hundreds of messages a second)."""
    session: requests.Session | None = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        # Never pick up proxies or .netrc credentials from the environment for provider calls.
        session.trust_env = False
        _local.session = session
    return session


class JsonPost:
    """POSTs JSON bodies to one URL with fixed headers: a transport's per-message call.

    The request is prepared once (URL parsed, headers set) and copied per call, and it is handed straight
    to the thread's connection adapter. ``Session.post`` prepared and merged everything again on every
    call (settings, cookies, hooks, redirect handling) for a third more CPU per message than the call
    itself (docs/performance.md, F1). Redirects are not followed: a provider's API does not redirect a
    send, and an answer we do not know is reported as the HTTP status it is.
    """

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self._template = requests.Request(
            "POST", url, headers={**headers, "Content-Type": "application/json"}
        ).prepare()

    def __call__(self, payload: object, *, timeout: tuple[float, float]) -> requests.Response:
        request = self._template.copy()
        body = json.dumps(payload, allow_nan=False).encode("utf-8")  # as requests' json= encodes it
        request.body = body
        request.headers["Content-Length"] = str(len(body))
        assert request.url is not None
        return http_session().get_adapter(request.url).send(request, timeout=timeout)


def parse_retry_after(value: str | None, *, default: float = DEFAULT_RETRY_AFTER) -> float:
    """Seconds to wait, from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return default
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def network_error(exc: requests.RequestException, provider: str) -> TransportError:
    """A request that never got an HTTP answer. Messages name the failure, never the URL's secrets."""
    if isinstance(exc, requests.Timeout):
        return TransportError(
            f"{provider} did not answer in time", kind=FailureKind.TRANSIENT, code="timeout"
        )
    if isinstance(exc, requests.ConnectionError):
        return TransportError(
            f"could not connect to {provider}", kind=FailureKind.TRANSIENT, code="connection"
        )
    return TransportError(f"request to {provider} failed", kind=FailureKind.TRANSIENT, code="request")


def json_or_empty(response: requests.Response) -> dict:
    # json.loads reads the bytes itself (UTF-8/16/32, as JSON allows): Response.json() first decoded the
    # body to text, guessing its encoding, on every send.
    try:
        body = json.loads(response.content)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
