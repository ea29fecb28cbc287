"""Money and shares for the usage page and the admin.

Money goes through `conversations.formatting.usd`, the site's one rule ($0.0042 for fractions
of a cent), so a cost reads the same here as under a reply; only the sign is added here, for
caching that cost more than it saved.
"""

from __future__ import annotations

from decimal import Decimal

from django import template

from conversations import formatting

register = template.Library()


def format_usd(amount: Decimal | float | int | None) -> str:
    if amount is None:
        return "—"
    value = Decimal(str(amount)) if isinstance(amount, float) else Decimal(amount)
    return f"−{formatting.usd(-value)}" if value < 0 else formatting.usd(value)


def format_share(share: float | None, digits: int = 0) -> str:
    return "—" if share is None else f"{share * 100:.{digits}f}%"


@register.filter
def usd(amount: Decimal | float | int | None) -> str:
    return format_usd(amount)


@register.filter
def share(value: float | None, digits: int = 0) -> str:
    return format_share(value, digits)


@register.filter
def hit_rate(spend) -> str:
    """The share of a Spend's prompt tokens read from the cache, as on the conversation page."""
    return formatting.hit_rate(cache_read=spend.cache_read_tokens, prompt=spend.prompt_tokens)


@register.filter
def tokens(count: int | None) -> str:
    return "—" if count is None else formatting.tokens(count)


@register.filter
def bar_percent(share: float | None) -> int:
    """A share as a bar's width in percent, kept within 0–100 (a budget can be overshot)."""
    return 0 if share is None else max(0, min(100, round(share * 100)))
