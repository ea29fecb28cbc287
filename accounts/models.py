from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q, Value


class SpendLimit(models.Model):
    """A monthly spend limit in USD. The row without a user is the default for everyone;
    a person's own row overrides it. No row at all (or a blank limit) means no limit."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="spend_limit")
    monthly_limit = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True,
        help_text="USD per calendar month (UTC). Blank: no limit.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        # NULLs never collide in a unique index, so "one default row" is a unique index on a
        # constant over the rows without a user.
        constraints = [models.UniqueConstraint(Value(1), condition=Q(user__isnull=True), name="one_default_spend_limit")]

    def __str__(self) -> str:
        who = self.user.get_username() if self.user_id else "Default (everyone)"
        limit = f"${self.monthly_limit}" if self.monthly_limit is not None else "no limit"
        return f"{who}: {limit} a month"

    @property
    def is_default(self) -> bool:
        return self.user_id is None


ZERO = Decimal(0)


class ApiToken(models.Model):
    """A personal API token (`Authorization: Bearer …`), created and revoked on the account page.

    Only a SHA-256 of the secret is stored: the secret is shown once, and a leaked database
    holds no working token. `prefix` (the secret's first characters) tells tokens apart.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
