"""A token bucket per channel: how many messages a second a number may send.

The rate comes from the channel (``Channel.effective_rate_limit``: its own setting, else the provider
default in ``channels_app.models.DEFAULT_RATE_LIMITS``: Whapi 5/s, Meta 80/s, sandbox 20/s). The bucket
holds one second's worth of tokens (at least one), so a quiet number may send a short burst.

Where the state lives:
- ``REDIS_URL`` set (production: several workers drain at once): one Redis hash per channel, updated by a
  Lua script so take-a-token is atomic across workers, timed by the Redis server's clock so workers'
  clocks don't matter.
- otherwise (embedded mode: one process, one drainer thread): a dict in this process.

``take`` never sleeps: it answers how long to wait (0.0 = go now). The drain then puts the row back for
that long instead of blocking other channels' messages behind one slow number.
"""

from __future__ import annotations

import math
import threading
import time
from functools import lru_cache
from typing import Any, Protocol

from django.conf import settings

KEY_PREFIX = "outbox:bucket:"

# KEYS[1] bucket key; ARGV rate, burst. Returns the seconds to wait as a string (0 = token taken).
TAKE_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return tostring(wait)
"""


def bucket_size(rate: float) -> float:
    return max(1.0, rate)


class TokenBucket(Protocol):
    def take(self, key: str, rate: float) -> float: ...


class MemoryTokenBucket:
    """In-process buckets; ``clock`` is a seam for tests."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._state: dict[str, tuple[float, float]] = {}

    def take(self, key: str, rate: float) -> float:
        if rate <= 0 or math.isinf(rate):
            return 0.0
        burst = bucket_size(rate)
        with self._lock:
            now = self._clock()
            tokens, ts = self._state.get(key, (burst, now))
            tokens = min(burst, tokens + max(0.0, now - ts) * rate)
            if tokens >= 1:
                self._state[key] = (tokens - 1, now)
                return 0.0
            self._state[key] = (tokens, now)
            return (1 - tokens) / rate


class RedisTokenBucket:
    def __init__(self, url: str) -> None:
        import redis

        self._client = redis.Redis.from_url(url)
        self._script = self._client.register_script(TAKE_SCRIPT)

    def take(self, key: str, rate: float) -> float:
        if rate <= 0 or math.isinf(rate):
            return 0.0
        result = self._script(keys=[KEY_PREFIX + key], args=[repr(float(rate)), repr(bucket_size(rate))])
        return float(result.decode() if isinstance(result, bytes) else result)

    def reset(self, key: str) -> None:
        self._client.delete(KEY_PREFIX + key)


@lru_cache(maxsize=1)
def _bucket_for(url: str) -> TokenBucket:
    return RedisTokenBucket(url) if url else MemoryTokenBucket()


def token_bucket() -> TokenBucket:
    """The process's bucket store: Redis when REDIS_URL is set, else in memory."""
    return _bucket_for(getattr(settings, "REDIS_URL", "") or "")
