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

A provider's 429 pauses a number (``pause``): no slot is reserved before the pause ends, and
``paused_for`` tells every drain, in every process, that the slots it already holds must not be used:
the drain that got the 429 records the pause in the database only when it records its batch, and
other drains would otherwise keep sending that number's held rows for up to a horizon. The database's
record decides when the pause is over: resuming the number there (``outbox_resume_due_channels``) calls
``resume``, which forgets the number's pause and next slot here.

Where the state lives:
- ``REDIS_URL`` set (production: several workers drain at once): one Redis key per number, updated by a
  Lua script so a reservation is atomic across workers, timed by the Redis server's clock so workers'
  clocks don't matter.
- otherwise (embedded mode: one process, one drainer thread): a dict in this process.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from django.conf import settings

logger = logging.getLogger(__name__)

KEY_PREFIX = "outbox:next-slot:"
PAUSE_PREFIX = "outbox:paused-until:"
# How long past its last reserved slot a number's key is kept: after that the number is idle anyway.
KEY_TTL_AFTER_LAST_SLOT = 60.0


def _lua_now(test_clock_arg: int) -> str:
    """Lua that sets ``now``: the Redis server's clock, or a test's clock passed as ``ARGV[test_clock_arg]``."""
    return f"""local now
if ARGV[{test_clock_arg}] then
  now = tonumber(ARGV[{test_clock_arg}])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""


# KEYS[1]: the number's next free moment (seconds on the Redis clock). ARGV: interval, horizon, count, key
# TTL after the last slot, and optionally now (tests drive the script with a fake clock; production uses
# the server's TIME).
# Returns {first slot's delay, rows reserved, next free slot's delay}; delays as strings, full precision.
# Mirrors MemoryRateLimiter.reserve step for step, so both give the same slots for the same clock.
RESERVE_SCRIPT = (
    """
local interval = tonumber(ARGV[1])
local horizon = tonumber(ARGV[2])
local count = tonumber(ARGV[3])
"""
    + _lua_now(5)
    + """local next_free = tonumber(redis.call('GET', KEYS[1]) or '') or now
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
)


# KEYS[1]: the number's pause end, KEYS[2]: its next free moment (both seconds on the Redis clock).
# ARGV: pause seconds, key TTL after the pause, and optionally now (tests). Keeps the later of two pauses,
# and moves the next free moment to the pause's end, so no slot is reserved inside the pause.
PAUSE_SCRIPT = (
    """
local seconds = tonumber(ARGV[1])
"""
    + _lua_now(3)
    + """local ends = now + seconds
local ttl_ms = math.ceil((seconds + tonumber(ARGV[2])) * 1000)
if (tonumber(redis.call('GET', KEYS[1]) or '') or now) < ends then
  redis.call('SET', KEYS[1], string.format('%.17g', ends), 'PX', ttl_ms)
end
if (tonumber(redis.call('GET', KEYS[2]) or '') or now) < ends then
  redis.call('SET', KEYS[2], string.format('%.17g', ends), 'PX', ttl_ms)
end
return 1
"""
)

# KEYS[1]: the number's pause end. ARGV: optionally now (tests). Returns the seconds left (0: not paused).
PAUSED_FOR_SCRIPT = (
    """
local ends = tonumber(redis.call('GET', KEYS[1]) or '')
if not ends then
  return '0'
end
"""
    + _lua_now(1)
    + """return string.format('%.17g', math.max(0, ends - now))
"""
)


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

    def pause(self, key: str, *, seconds: float) -> None: ...

    def paused_for(self, key: str) -> float: ...

    def resume(self, key: str) -> None: ...


class MemoryRateLimiter:
    """In-process next-free moments; ``clock`` is a seam for tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._next_free: dict[str, float] = {}
        self._paused_until: dict[str, float] = {}

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

    def pause(self, key: str, *, seconds: float) -> None:
        with self._lock:
            ends = self._clock() + seconds
            self._paused_until[key] = max(self._paused_until.get(key, ends), ends)
            self._next_free[key] = max(self._next_free.get(key, ends), ends)

    def paused_for(self, key: str) -> float:
        with self._lock:
            return max(0.0, self._paused_until.get(key, -math.inf) - self._clock())

    def resume(self, key: str) -> None:
        with self._lock:
            self._paused_until.pop(key, None)
            self._next_free.pop(key, None)


class RedisRateLimiter:
    """Shared through Redis. ``clock`` is for tests only: without it the Redis server's clock is used."""

    def __init__(self, url: str, clock: Callable[[], float] | None = None) -> None:
        import redis

        # Short timeouts: every paced call reads the shared pause, so an unreachable Redis must fail fast
        # (open, see ``paused_for``) rather than hold sends for the operating system's connect timeout.
        self._client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        self._script = self._client.register_script(RESERVE_SCRIPT)
        self._errors = redis.RedisError
        self._pause_script = self._client.register_script(PAUSE_SCRIPT)
        self._paused_for_script = self._client.register_script(PAUSED_FOR_SCRIPT)
        self._clock = clock

    def _now_args(self) -> list[str]:
        return [] if self._clock is None else [repr(float(self._clock()))]

    def reserve(self, key: str, *, rate: float, horizon: float, count: int = 1) -> Reservation:
        if is_unlimited(rate):
            return unlimited(count)
        interval = 1.0 / rate
        args = [repr(interval), repr(float(horizon)), str(int(count)), repr(KEY_TTL_AFTER_LAST_SLOT)]
        first_in, reserved, next_free_in = self._script(keys=[KEY_PREFIX + key], args=args + self._now_args())
        return Reservation(
            first_in=float(first_in),
            interval=interval,
            reserved=int(reserved),
            next_free_in=float(next_free_in),
        )

    # The pause here only spreads the news fast; the database's ``Channel.paused_until`` is its record
    # (parked rows, the resume). So if Redis fails, both fail open: sends go on as the database allows.

    def pause(self, key: str, *, seconds: float) -> None:
        args = [repr(float(seconds)), repr(KEY_TTL_AFTER_LAST_SLOT), *self._now_args()]
        try:
            self._pause_script(keys=[PAUSE_PREFIX + key, KEY_PREFIX + key], args=args)
        except self._errors:
            logger.warning("could not share the pause of %s through Redis", key, exc_info=True)

    def paused_for(self, key: str) -> float:
        try:
            return float(self._paused_for_script(keys=[PAUSE_PREFIX + key], args=self._now_args()))
        except self._errors:
            logger.warning("could not read the pause of %s from Redis", key, exc_info=True)
            return 0.0

    def resume(self, key: str) -> None:
        try:
            self.reset(key)
        except self._errors:
            logger.warning("could not clear the pause of %s in Redis", key, exc_info=True)

    def reset(self, key: str) -> None:
        self._client.delete(KEY_PREFIX + key, PAUSE_PREFIX + key)


@lru_cache(maxsize=1)
def _limiter_for(url: str) -> RateLimiter:
    return RedisRateLimiter(url) if url else MemoryRateLimiter()


def rate_limiter() -> RateLimiter:
    """The process's send-slot store: Redis when REDIS_URL is set, else in memory."""
    return _limiter_for(getattr(settings, "REDIS_URL", "") or "")
