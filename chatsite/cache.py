"""Django's Redis cache, degrading to this process's memory while Redis fails.

The default cache holds the log-in throttle and the API rate limits, the "rendered" cache the
HTML of finished replies. Both live in Redis so that every web process shares them. A Redis
that is down, restarting or hung must not turn every log-in and page load into an HTTP 500,
nor make each of them wait out a socket timeout: the first failure opens a short circuit
during which the process uses its own memory cache (limits then hold per process, as they do
without Redis), and Redis is tried again once it has passed.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# Seconds a process stays on its memory cache after Redis failed, before trying it again.
RETRY_SECONDS = 5.0


class FailoverRedisCache(RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        params = dict(params)
        options = dict(params.get("OPTIONS") or {})
        self.retry_seconds = float(options.pop("FAILOVER_RETRY_SECONDS", RETRY_SECONDS))
        params["OPTIONS"] = options
        super().__init__(server, params)
        self.local = LocMemCache(f"failover-{id(self)}", {"OPTIONS": {"MAX_ENTRIES": 10_000}, "KEY_PREFIX": params.get("KEY_PREFIX", "")})
        self.down_until = 0.0

    def _either(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if time.monotonic() >= self.down_until:
            try:
                return getattr(RedisCache, name)(self, *args, **kwargs)
            except (RedisError, OSError) as exc:
                self.down_until = time.monotonic() + self.retry_seconds
                log.warning("Redis cache unavailable (%s: %s); using this process's memory for %.0f s", type(exc).__name__, exc, self.retry_seconds)
        return getattr(self.local, name)(*args, **kwargs)

    @property
    def degraded(self) -> bool:
        return time.monotonic() < self.down_until

    def add(self, *args: Any, **kwargs: Any) -> Any:
        return self._either("add", *args, **kwargs)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self._either("get", *args, **kwargs)

    def set(self, *args: Any, **kwargs: Any) -> Any:
        return self._either("set", *args, **kwargs)

    def touch(self, *args: Any, **kwargs: Any) -> Any:
        return self._either("touch", *args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        return self._either("delete", *args, **kwargs)

    def get_many(self, *args: Any, **kwargs: Any) -> Any:
        return self._either("get_many", *args, **kwargs)

    def has_key(self, *args: Any, **kwargs: Any) -> Any:
        return self._either("has_key", *args, **kwargs)

    def incr(self, *args: Any, **kwargs: Any) -> Any:
        return self._either("incr", *args, **kwargs)

    def set_many(self, *args: Any, **kwargs: Any) -> Any:
        return self._either("set_many", *args, **kwargs)

    def delete_many(self, *args: Any, **kwargs: Any) -> Any:
        return self._either("delete_many", *args, **kwargs)

    def clear(self) -> Any:
        self.local.clear()
        return self._either("clear")
