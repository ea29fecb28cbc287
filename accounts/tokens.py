"""Personal API tokens: created and revoked on the account page, checked on every API request.

The secret is shown once and stored only as its SHA-256. A request's token is found by its
hash (an indexed equality on a value an attacker cannot steer), so no secret is ever compared
character by character. `last_used_at` is written at most once a minute per token: an API
client making many calls must not turn every request into a database write.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db.models import F, QuerySet
from django.utils import timezone

from .models import ApiToken

SECRET_PREFIX = "chs_"
SHOWN_PREFIX_CHARS = 12  # "chs_" + 8 characters of the secret
MAX_ACTIVE_TOKENS = 20
LAST_USED_RESOLUTION = timedelta(minutes=1)
_MAX_SECRET_CHARS = 200


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def api_tokens_for_user(*, user: AbstractBaseUser) -> QuerySet[ApiToken]:
    """The person's tokens, active first, newest first (revoked ones stay listed for the record)."""
    return ApiToken.objects.filter(user=user).order_by(F("revoked_at").desc(nulls_first=True), "-created_at", "-id")


def api_token_create(*, user: AbstractBaseUser, name: str) -> tuple[ApiToken, str]:
    """A new token and its secret. The secret is not stored: show it now or never."""
    name = " ".join(name.split())[:100]
    if not name:
        raise ValidationError("Give the token a name, e.g. the computer or script that will use it.", code="empty")
    if ApiToken.objects.filter(user=user, revoked_at__isnull=True).count() >= MAX_ACTIVE_TOKENS:
        raise ValidationError(f"You already have {MAX_ACTIVE_TOKENS} active tokens. Revoke one you no longer use first.", code="too_many")
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name, prefix=secret[:SHOWN_PREFIX_CHARS], token_hash=_digest(secret))
    return token, secret


def api_token_revoke(*, user: AbstractBaseUser, token_id: int) -> bool:
    """Revoke one of the person's own tokens; False if there is no such active token."""
    return bool(ApiToken.objects.filter(pk=token_id, user=user, revoked_at__isnull=True).update(revoked_at=timezone.now()))


def api_token_authenticate(*, secret: str) -> ApiToken | None:
    """The active token with this secret (its user loaded), or None. Refreshes `last_used_at`."""
    if not secret.startswith(SECRET_PREFIX) or len(secret) > _MAX_SECRET_CHARS:
        return None
    digest = _digest(secret)
    token = ApiToken.objects.select_related("user").filter(token_hash=digest, revoked_at__isnull=True, user__is_active=True).first()
    if token is None or not hmac.compare_digest(token.token_hash, digest):
        return None
    now = timezone.now()
    if token.last_used_at is None or token.last_used_at < now - LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
