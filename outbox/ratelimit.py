"""Send-slot reservations per number (GCRA): when each message of a number may go, 1/rate apart.

The rate comes from the channel (``Channel.effective_rate_limit``: its own setting, else the provider
default in ``channels_app.models.DEFAULT_RATE_LIMITS``: Whapi 5/s, Meta 80/s, sandbox 20/s).

Why reservations and not a token bucket: a bucket that may go quiet refills toward its burst, and that
burst lands on top of the steady rate, so a number that waited a little too long sends up to
``rate·T + burst`` in a window of ``T`` seconds (F2 measured 1.02-1.03 of the limit with a one-second
burst). A burst small enough not to matter made the drain claim and put back most of a backlog to send
one message per number per cycle (docs/performance.md, "Tried and reverted"). Here each number keeps
only its next free moment (the GCRA's "theoretical arrival time"); a send takes the next free slot even
when that is up to ``horizon`` seconds away, and the drain holds the row and makes the call at that
moment. So one claim carries up to ``horizon·rate`` rows of a number, yet sends never come closer than
1/rate: at most ``rate·T + 1`` in any window of ``T`` seconds, however long the number was idle.

``reserve(key, rate=, horizon=, count=)``, for ``count`` rows of one number in claim order:

1. ``first`` = the number's next free moment, or now if that has passed (an idle number gets no credit
   for the time it was idle: that credit is the burst this module exists to avoid).
2. Slots ``first``, ``first + 1/rate``, … are reserved while they are less than ``horizon`` from now,
   for at most ``count`` rows; the next free moment moves past the last one.
3. It answers the first slot's delay from now, the spacing, how many rows got a slot (the first ones),
   and the delay to the number's next free slot (when the caller may usefully ask again).

Where the state lives:
- ``REDIS_URL`` set (production: several workers drain at once): one Redis key per number, updated by a
  Lua script so a reservation is atomic across workers, timed by the Redis server's clock so workers'
  clocks don't matter.
- otherwise (embedded mode: one process, one drainer thread): a dict in this process.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from django.conf import settings

KEY_PREFIX = "outbox:next-slot:"
# How long past its last reserved slot a number's key is kept: after that the number is idle anyway.
KEY_TTL_AFTER_LAST_SLOT = 60.0

# KEYS[1]: the number's next free moment (seconds on the Redis clock). ARGV: interval, horizon, count, key
# TTL after the last slot, and optionally now (tests drive the script with a fake clock; production uses
# the server's TIME).
# Returns {first slot's delay, rows reserved, next free slot's delay}; delays as strings, full precision.
# Mirrors MemoryRateLimiter.reserve step for step, so both give the same slots for the same clock.
RESERVE_SCRIPT = """
local interval = tonumber(ARGV[1])
local horizon = tonumber(ARGV[2])
local count = tonumber(ARGV[3])
local now
if ARGV[5] then
  now = tonumber(ARGV[5])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local next_free = tonumber(redis.call('GET', KEYS[1]) or '') or now
if next_free < now then
  next_free = now
end
local first = next_free
local reserved = 0
while reserved < count and next_free - now < horizon do
  reserved = reserved + 1
  next_free = next_free + interval
end
if reserved > 0 then
  local ttl_ms = math.ceil((next_free - now + tonumber(ARGV[4])) * 1000)
  redis.call('SET', KEYS[1], string.format('%.17g', next_free), 'PX', ttl_ms)
end
return {string.format('%.17g', first - now), reserved, string.format('%.17g', next_free - now)}
"""


@dataclass(frozen=True)
class Reservation:
    first_in: float  # seconds from now until the first reserved slot
    interval: float  # seconds between reserved slots (1/rate; 0 for an unlimited number)
    reserved: int  # how many of the asked-for rows got a slot: the first ``reserved`` of them
    next_free_in: float  # seconds from now until the number's next free slot, after these

    def delays(self) -> list[float]:
        """Each reserved row's slot, in seconds from the moment of the reservation."""
        return [self.first_in + n * self.interval for n in range(self.reserved)]


def is_unlimited(rate: float) -> bool:
    return rate <= 0 or math.isinf(rate)


def unlimited(count: int) -> Reservation:
    return Reservation(first_in=0.0, interval=0.0, reserved=count, next_free_in=0.0)


class RateLimiter(Protocol):
    def reserve(self, key: str, *, rate: float, horizon: float, count: int = 1) -> Reservation: ...


class MemoryRateLimiter:
    """In-process next-free moments; ``clock`` is a seam for tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._next_free: dict[str, float] = {}

    def reserve(self, key: str, *, rate: float, horizon: float, count: int = 1) -> Reservation:
        if is_unlimited(rate):
            return unlimited(count)
        interval = 1.0 / rate
        with self._lock:
            now = self._clock()
            next_free = max(self._next_free.get(key, now), now)
            first = next_free
            reserved = 0
            while reserved < count and next_free - now < horizon:
                reserved += 1
                next_free += interval
            if reserved:
                self._next_free[key] = next_free
        return Reservation(
            first_in=first - now, interval=interval, reserved=reserved, next_free_in=next_free - now
        )


class RedisRateLimiter:
    """Shared through Redis. ``clock`` is for tests only: without it the Redis server's clock is used."""

    def __init__(self, url: str, clock: Callable[[], float] | None = None) -> None:
        import redis

        self._client = redis.Redis.from_url(url)
        self._script = self._client.register_script(RESERVE_SCRIPT)
        self._clock = clock

    def reserve(self, key: str, *, rate: float, horizon: float, count: int = 1) -> Reservation:
        if is_unlimited(rate):
            return unlimited(count)
        interval = 1.0 / rate
        args = [repr(interval), repr(float(horizon)), str(int(count)), repr(KEY_TTL_AFTER_LAST_SLOT)]
        if self._clock is not None:
            args.append(repr(float(self._clock())))
        first_in, reserved, next_free_in = self._script(keys=[KEY_PREFIX + key], args=args)
        return Reservation(
            first_in=float(first_in),
            interval=interval,
            reserved=int(reserved),
            next_free_in=float(next_free_in),
        )

    def reset(self, key: str) -> None:
        self._client.delete(KEY_PREFIX + key)


@lru_cache(maxsize=1)
def _limiter_for(url: str) -> RateLimiter:
    return RedisRateLimiter(url) if url else MemoryRateLimiter()


def rate_limiter() -> RateLimiter:
    """The process's send-slot store: Redis when REDIS_URL is set, else in memory."""
    return _limiter_for(getattr(settings, "REDIS_URL", "") or "")
