"""What a call to Claude cost, from its usage and the model's prices.

Anthropic reports cache writes and cache reads *in addition to* input_tokens, each with its own
price (5-minute and 1-hour writes differ), so each count is billed once at its own rate —
never input_tokens plus the cache tokens again at the input price.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from .llm import Usage

MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class Prices:
    """A model's rates (USD per million tokens) captured when a call starts."""

    model_id: str
    input: Decimal
    output: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    cache_read: Decimal
    long_prompt_threshold: int | None = None
    long_prompt_multiplier: Decimal = Decimal(1)

    @classmethod
    def of(cls, model) -> "Prices":
        return cls(
            model_id=model.model_id,
            input=model.input_price,
            output=model.output_price,
            cache_write_5m=model.cache_write_5m_price,
            cache_write_1h=model.cache_write_1h_price,
            cache_read=model.cache_read_price,
            long_prompt_threshold=model.long_prompt_threshold,
            long_prompt_multiplier=model.long_prompt_multiplier,
        )

    @classmethod
    def free(cls, model_id: str) -> "Prices":
        """For a model that is no longer in the price table: counted, priced at zero."""
        zero = Decimal(0)
        return cls(model_id, zero, zero, zero, zero, zero)


@dataclass(frozen=True)
class Cost:
    total: Decimal
    uncached: Decimal  # the same call with every cache token billed as plain input

    @property
    def saved(self) -> Decimal:
        return self.uncached - self.total


def _multiplier(usage: Usage, prices: Prices) -> Decimal:
    if prices.long_prompt_threshold is not None and usage.prompt_tokens > prices.long_prompt_threshold:
        return prices.long_prompt_multiplier
    return Decimal(1)


def cost_of(usage: Usage, prices: Prices) -> Cost:
    one_hour = min(usage.cache_creation_1h_input_tokens, usage.cache_creation_input_tokens)
    five_minutes = usage.cache_creation_input_tokens - one_hour
    m = _multiplier(usage, prices)
    total = (
        usage.input_tokens * prices.input
        + usage.output_tokens * prices.output
        + five_minutes * prices.cache_write_5m
        + one_hour * prices.cache_write_1h
        + usage.cache_read_input_tokens * prices.cache_read
    ) * m / MILLION
    uncached = (usage.prompt_tokens * prices.input + usage.output_tokens * prices.output) * m / MILLION
    return Cost(total=total, uncached=uncached)


def billed_equivalent_input(usage: Usage) -> float:
    """Input tokens weighted as billed (cache reads 0.1×, 5-minute writes 1.25×, 1-hour 2×)."""
    one_hour = min(usage.cache_creation_1h_input_tokens, usage.cache_creation_input_tokens)
    return usage.input_tokens + 0.1 * usage.cache_read_input_tokens + 1.25 * (usage.cache_creation_input_tokens - one_hour) + 2.0 * one_hour
