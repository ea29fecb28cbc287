"""The request Chatsite sends to Claude for a reply: system blocks, summary, history and cache
breakpoints; trimmed with a notice if it cannot fit the model's context window.

Caching (https://platform.claude.com/docs/en/build-with-claude/prompt-caching):
- the system prompt is one cacheable block, so every conversation using a preset reads it;
- the rolling summary, when there is one, is a second system block with its own breakpoint: it
  only changes at a compaction step, so the prefix stays cached between steps;
- the newest message carries a breakpoint, so each turn writes the conversation prefix and the
  next turn reads it (Anthropic finds the previous breakpoint within 20 blocks back).
At most 3 of the 4 allowed breakpoints. A breakpoint whose prefix is estimated below the model's
minimum cacheable length is left out: Anthropic would ignore it anyway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# A generous tokens-per-character estimate: newer Claude tokenizers give ~30% more tokens than
# the old 4-characters rule, and overestimating only makes us trim or compact a little earlier.
CHARS_PER_TOKEN = 3.0
# Per-message overhead of the Messages API framing.
MESSAGE_OVERHEAD_TOKENS = 4
SUMMARY_INTRO = (
    "Summary of the earlier part of this conversation. The messages it covers are not repeated "
    "below; rely on this summary for them.\n\n"
)


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


@dataclass(frozen=True)
class CachePolicy:
    enabled: bool = True
    ttl: str = "5m"
    min_tokens: int = 1024

    def control(self) -> dict[str, str]:
        # "5m" is Anthropic's default; it is sent explicitly so requests read the same either way.
        return {"type": "ephemeral", "ttl": self.ttl}


@dataclass
class Prompt:
    system: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    estimated_tokens: int = 0
    trimmed_messages: int = 0
    breakpoints: int = 0

    @property
    def note(self) -> str:
        if not self.trimmed_messages:
            return ""
        n = self.trimmed_messages
        return (
            f"The {n} oldest message{'s' if n != 1 else ''} did not fit in the model's context window, so Claude did not see "
            f"{'them' if n != 1 else 'it'} for this reply. They are kept here, and a summary is being prepared."
        )


def _message_tokens(message: dict[str, Any]) -> int:
    return estimate_tokens(message["content"]) + MESSAGE_OVERHEAD_TOKENS


def build(
    *,
    system_prompt: str,
    summary: str,
    history: list[dict[str, Any]],
    policy: CachePolicy,
    max_prompt_tokens: int,
) -> Prompt:
    """Build the request for a reply to `history` (alternating turns, ending with the person's).

    `max_prompt_tokens` is what the context window leaves after the reply's max_tokens: oldest
    turns are dropped (never the newest message) until the estimate fits.
    """
    prompt = Prompt()
    system_texts = [t for t in (system_prompt.strip(), (SUMMARY_INTRO + summary.strip()) if summary.strip() else "") if t]
    system_tokens = sum(estimate_tokens(t) for t in system_texts)
    sizes = [_message_tokens(m) for m in history]
    total = system_tokens + sum(sizes)
    start = 0
    # Drop whole exchanges from the front; the API wants the first message to be the person's.
    while total > max_prompt_tokens and start < len(history) - 1:
        total -= sizes[start]
        start += 1
        while start < len(history) - 1 and history[start]["role"] != "user":
            total -= sizes[start]
            start += 1
    prompt.trimmed_messages = start
    prompt.estimated_tokens = total
    kept = history[start:]

    cumulative = 0
    for text in system_texts:
        cumulative += estimate_tokens(text)
        block: dict[str, Any] = {"type": "text", "text": text}
        if policy.enabled and cumulative >= policy.min_tokens:
            block["cache_control"] = policy.control()
            prompt.breakpoints += 1
        prompt.system.append(block)

    prompt.messages = [dict(m) for m in kept]
    if prompt.messages and policy.enabled and total >= policy.min_tokens:
        last = prompt.messages[-1]
        last["content"] = [{"type": "text", "text": last["content"], "cache_control": policy.control()}]
        prompt.breakpoints += 1
    return prompt
