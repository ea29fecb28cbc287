"""Log-in throttling: django-axes, with one limit per client address and another per account.

Axes counts failed log-ins (Chatsite's form and /admin/login/ alike: it sits in the
authentication backends) in Django's default cache, so the counts hold across every web
process when that cache is Redis. Each failure counts twice: once for the client's address,
once for the username. Axes compares the higher of the two counts with a single limit; this
handler gives each its own, so that:

- one address (one person, one attacker) is stopped after CHATSITE_LOGIN_FAILURES_PER_ADDRESS
  failures, whatever usernames it tries (password spraying);
- one account is stopped after CHATSITE_LOGIN_FAILURES_PER_ACCOUNT failures from anywhere
  (guessing from many addresses). That limit is the higher one, so a single address cannot
  lock anyone else out of their account: its own address is stopped first.

The client's address comes from settings.CHATSITE_TRUSTED_PROXIES (see settings: axes reads
it through django-ipware), never from a header a client can choose.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from axes.handlers.cache import AxesCacheHandler
from axes.helpers import get_client_cache_keys
from ipware.ip import get_client_ip


def failure_limits() -> tuple[int, int]:
    """(per address, per account), in the order of settings.AXES_LOCKOUT_PARAMETERS."""
    return settings.CHATSITE_LOGIN_FAILURES_PER_ADDRESS, settings.CHATSITE_LOGIN_FAILURES_PER_ACCOUNT


class LoginThrottle(AxesCacheHandler):
    def is_locked(self, request: HttpRequest, credentials: dict | None = None) -> bool:
        counts = [self.cache.get(key, default=0) for key in get_client_cache_keys(request, credentials)]
        return any(count >= limit for count, limit in zip(counts, failure_limits()))


def client_address(request: HttpRequest) -> str | None:
    """The client's address as the last trusted proxy saw it (django-ipware).

    With CHATSITE_TRUSTED_PROXIES = N > 0, each of the N proxies appended the address it was
    reached from to X-Forwarded-For, and the last one's own address is REMOTE_ADDR: the client
    is the N-th entry from the right. Entries further left are whatever the client sent.
    """
    proxies = settings.CHATSITE_TRUSTED_PROXIES
    if proxies <= 0:
        return request.META.get("REMOTE_ADDR")
    # proxy_count counts the proxies whose addresses are IN the header; not strict: a longer
    # header (the client's own X-Forwarded-For in front) must not make ipware fall back to
    # REMOTE_ADDR, the proxy's address that everyone shares.
    address, _routable = get_client_ip(
        request, proxy_count=proxies - 1, request_header_order=("HTTP_X_FORWARDED_FOR",), strict=False,
    )
    # No header: the request did not come through the proxy; its peer is the client.
    return address or request.META.get("REMOTE_ADDR")
