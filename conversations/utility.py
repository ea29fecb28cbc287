"""Calls to the utility model (titles, summaries) that fit each model's thinking rules.

Today's models think before they answer unless told not to, and thinking tokens count toward
max_tokens: a 30-token title request at the default effort can spend all 30 on thinking and
come back with no text at all. So a utility call turns up-front thinking off where the model
allows it (`thinking.type` "disabled", or "between_tools" on Sonnet 5.5, both only at effort
high or lower) and asks for the lowest effort; where thinking cannot be turned off (Opus 5.5,
Fable 5.1) it asks for the lowest effort and leaves `CHATSITE_UTILITY_THINKING_TOKENS` of room
for thinking on top of the text's budget. Effort goes in `output_config.effort`; thinking
budgets (`budget_tokens`) are refused by these models and never sent.

Sources: platform.claude.com/docs/en/build-with-claude/adaptive-thinking, /effort and each
model's "What's new" page, read 2026-12-08; the per-model data is catalog.CAPABILITIES, copied
onto each LLMModel row (editable in admin).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from . import llm
from .models import LLMModel

LOWEST_EFFORT = "low"


@dataclass(frozen=True)
class UtilityRequest:
    max_tokens: int
    options: dict[str, Any]


def utility_request(*, thinks_by_default: bool, thinking_off: str, text_tokens: int, thinking_room: int) -> UtilityRequest:
    """max_tokens and the thinking fields of a utility call that needs `text_tokens` of text."""
    if not thinks_by_default:
        # An older model: it thinks only when asked, and may not know `effort` at all.
        return UtilityRequest(max_tokens=text_tokens, options={})
    effort = {"output_config": {"effort": LOWEST_EFFORT}}
    if thinking_off:
        return UtilityRequest(max_tokens=text_tokens, options={"thinking": {"type": thinking_off}, **effort})
    return UtilityRequest(max_tokens=text_tokens + thinking_room, options=effort)


def _request_for(model: LLMModel, text_tokens: int) -> UtilityRequest:
    return utility_request(
        thinks_by_default=model.thinks_by_default, thinking_off=model.thinking_off, text_tokens=text_tokens,
        thinking_room=settings.CHATSITE_UTILITY_THINKING_TOKENS,
    )


def utility_max_tokens(*, model: LLMModel, text_tokens: int) -> int:
    """The max_tokens utility_complete sends for `text_tokens` of text."""
    return min(_request_for(model, text_tokens).max_tokens, model.max_output_tokens)


def utility_complete(*, model: LLMModel, system: str, prompt: str, text_tokens: int) -> llm.Completion:
    """One utility call: `prompt` as the person's turn, `text_tokens` for the answer's text."""
    return llm.complete(
        model=model.model_id, system=system, messages=[{"role": "user", "content": prompt}],
        max_tokens=utility_max_tokens(model=model, text_tokens=text_tokens), options=_request_for(model, text_tokens).options,
    )
