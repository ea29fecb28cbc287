"""Slow down password guessing: at most FAILURE_LIMIT failed log-ins per username+IP per window.

Counters live in Django's default cache: Redis when REDIS_URL is set (one limit across every
web process), else process memory.
"""

import hashlib

from django.core.cache import cache
from django.http import HttpRequest

FAILURE_LIMIT = 10
WINDOW_SECONDS = 15 * 60


def _key(username: str, ip: str) -> str:
    # Hashed so that any username is a valid cache key (memcached rejects spaces and long keys).
    digest = hashlib.sha256(f"{username.casefold()}\n{ip}".encode()).hexdigest()
    return f"accounts:login-failures:{digest}"


def client_ip(request: HttpRequest | None) -> str:
    # REMOTE_ADDR only: X-Forwarded-For is client-controlled unless a trusted proxy rewrites it.
    if request is None:
        return ""
    return request.META.get("REMOTE_ADDR", "")


def login_is_throttled(*, username: str, ip: str) -> bool:
    return cache.get(_key(username, ip), 0) >= FAILURE_LIMIT


def login_failure_record(*, username: str, ip: str) -> None:
    key = _key(username, ip)
    # add() only sets a missing key, so the window starts at the first failure and later
    # failures don't extend it.
    if cache.add(key, 1, WINDOW_SECONDS):
        return
    try:
        cache.incr(key)
    except ValueError:  # expired between add() and incr()
        cache.add(key, 1, WINDOW_SECONDS)


def login_failures_clear(*, username: str, ip: str) -> None:
    cache.delete(_key(username, ip))
