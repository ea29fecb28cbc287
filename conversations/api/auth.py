"""Who is calling the API, and how often they may.

Programs send a personal token (`Authorization: Bearer …`): no cookies, so no CSRF to defend
against. The browser may use its session cookie instead; then unsafe methods need the CSRF
token, as everywhere else on the site. A request that carries an Authorization header is
judged by its token alone: a bad token is a 401, never a silent fall back to the cookie.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest
from ninja.security import APIKeyCookie, HttpBearer
from ninja.throttling import SimpleRateThrottle

from accounts import tokens

from ..asyncdb import request_db


@dataclass(frozen=True)
class Caller:
    user: AbstractBaseUser
    token_id: int | None = None

    @property
    def rate_key(self) -> str:
        # Per token: two scripts with two tokens get a budget each; the browser gets its own.
        return f"token-{self.token_id}" if self.token_id is not None else f"session-{self.user.pk}"


class TokenAuth(HttpBearer):
    async def authenticate(self, request: HttpRequest, token: str) -> Caller | None:
        api_token = await request_db(tokens.api_token_authenticate)(secret=token)
        return Caller(user=api_token.user, token_id=api_token.pk) if api_token is not None else None


class BrowserSessionAuth(APIKeyCookie):
    """The site's own session cookie; ninja checks CSRF for unsafe methods before we look."""

    param_name = settings.SESSION_COOKIE_NAME

    def __call__(self, request: HttpRequest) -> Any:
        if "authorization" in request.headers or not request.COOKIES.get(settings.SESSION_COOKIE_NAME):
            return None  # not a browser request: no CSRF check that would turn a 401 into a 403
        return super().__call__(request)

    async def authenticate(self, request: HttpRequest, key: str | None) -> Caller | None:
        user = await request.auser()
        return Caller(user=user) if user.is_authenticated else None


def caller_of(request: HttpRequest) -> Caller:
    return request.auth  # type: ignore[attr-defined]  # set by ninja from one of the classes above


class CallerThrottle(SimpleRateThrottle):
    """A sliding window per token (or browser session) in Django's cache.

    The rate is read from settings on every request, so it can be changed without a restart
    of this object (and in tests). The window lives in the default cache: Redis when
    REDIS_URL is set, so it holds across every web process.
    """

    def __init__(self, scope: str, setting: str) -> None:  # noqa: D107 — no parent init: the rate is read per request
        self.scope = scope
        self.setting = setting
        self.rate = None
        self.num_requests, self.duration = None, None

    def allow_request(self, request: HttpRequest) -> bool:
        self.rate = getattr(settings, self.setting, None)
        if not self.rate:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request)

    def get_cache_key(self, request: HttpRequest) -> str | None:
        caller = getattr(request, "auth", None)
        if not isinstance(caller, Caller):
            return None
        return f"chatsite-api:{self.scope}:{caller.rate_key}"

    def wait(self) -> float | None:
        # Until the oldest request in the window leaves it (always known: a 429 carries Retry-After).
        if not self.history:
            return float(self.duration or 1)
        return max(1.0, self.duration - (self.now - self.history[-1]))


api_auth = [TokenAuth(), BrowserSessionAuth()]
request_throttle = CallerThrottle("requests", "CHATSITE_API_RATE")
send_throttle = CallerThrottle("sends", "CHATSITE_API_SEND_RATE")
