"""How costs, token counts and cache use read on the conversation page.

static/chatsite/chat.js formats replies that finish while the page is open with the same rules
(`formatUsd`, `usageParts`, `hitRate`); keep the two in step so a reload never changes a figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from .models import Message

_CENT_HUNDREDTH = Decimal("0.0001")


def usd(amount: Decimal | str | int | None) -> str:
    """$1,234.56 from a dollar up; $0.0042 below; two significant digits for tiny amounts."""
    value = Decimal(amount or 0)
    if value <= 0:
        return "$0.00"
    if value >= 1:
        places = 2
    elif value >= _CENT_HUNDREDTH:
        places = 4
    else:
        places = 1 - value.adjusted()  # two significant digits: 0.000042
    rounded = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return f"${rounded:,.{places}f}"


def tokens(count: int) -> str:
    return f"{count:,}"


def hit_rate(*, cache_read: int, prompt: int) -> str:
    """The share of prompt tokens read from the cache, as a whole percentage (half up)."""
    if prompt <= 0:
        return "—"
    percent = (200 * cache_read + prompt) // (2 * prompt)
    if percent == 0 and cache_read > 0:
        return "<1%"
    return f"{percent}%"


@dataclass(frozen=True)
class ReplyUsage:
    """The discreet line under a finished reply."""

    input: str
    output: str
    cache_read: str  # "" when the cache was not read
    cache_write: str  # "" when nothing was written to the cache
    cost: str
    cost_exact: str
    prompt_tokens: int
    cache_read_tokens: int
    title: str


def reply_usage(message: Message) -> ReplyUsage:
    read, written = message.cache_read_input_tokens, message.cache_creation_input_tokens
    return ReplyUsage(
        input=tokens(message.input_tokens),
        output=tokens(message.output_tokens),
        cache_read=tokens(read) if read else "",
        cache_write=tokens(written) if written else "",
        cost=usd(message.cost),
        cost_exact=str(message.cost),
        prompt_tokens=message.input_tokens + read + written,
        cache_read_tokens=read,
        title=usage_title(input_tokens=message.input_tokens, output_tokens=message.output_tokens, cache_write=written, cache_read=read, cost=message.cost),
    )


def usage_title(*, input_tokens: int, output_tokens: int, cache_write: int, cache_read: int, cost: Decimal | str) -> str:
    value = Decimal(cost or 0)
    exact = f"{value.normalize():f}" if value else "0"
    return (
        f"Input: {tokens(input_tokens)} tokens (not cached) · Output: {tokens(output_tokens)} tokens · "
        f"Cache write: {tokens(cache_write)} tokens · Cache read: {tokens(cache_read)} tokens · "
        f"Cost: ${exact} at the prices of the time of this reply"
    )
