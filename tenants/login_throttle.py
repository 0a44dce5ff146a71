"""Sign-in lock-out: after repeated failures for one account (or from one address) refuse for a while.

Counts live in the cache (Redis in production, shared by every web process).
"""

from __future__ import annotations

import hashlib

from django.core.cache import cache

MAX_FAILURES = 5
WINDOW_SECONDS = 15 * 60


def _keys(username: str, ip_address: str) -> list[str]:
    name = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    # The address limit is looser: an office behind one NAT shares it.
    return [f"login-fail:user:{name}", f"login-fail:ip:{ip_address}"]


def _limits() -> list[int]:
    return [MAX_FAILURES, MAX_FAILURES * 4]


def is_locked_out(*, username: str, ip_address: str) -> bool:
    counts = cache.get_many(_keys(username, ip_address))
    return any(
        counts.get(key, 0) >= limit for key, limit in zip(_keys(username, ip_address), _limits(), strict=True)
    )


def record_failure(*, username: str, ip_address: str) -> None:
    for key in _keys(username, ip_address):
        if cache.add(key, 1, WINDOW_SECONDS):
            continue
        try:
            cache.incr(key)
        except ValueError:  # expired between add() and incr()
            cache.set(key, 1, WINDOW_SECONDS)


def clear_failures(*, username: str, ip_address: str) -> None:
    cache.delete(_keys(username, ip_address)[0])
