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

Sizes are estimated per model (`LLMModel.tokenizer_factor`), not with one characters-per-token
rule: the tokenizer of Claude 4.7 and later counts about 30 % more tokens for the same text, and
any tokenizer counts non-Latin scripts and code far above English prose. The estimate works on
UTF-8 bytes (four a token for the older tokenizer, times the model's factor): about right for
prose, and about a token a character for Chinese or Japanese, where three characters a token
would send a prompt three times past the window. `manage.py check_anthropic` compares the
estimate with the API's token count for each model.

Continue (`continue_from`): a model that accepts a prefill gets the kept text as the final
assistant turn, to be carried on exactly. Today's models refuse that (400 "This model does not
support assistant message prefill. The conversation must end with a user message."): they get
the kept text as the assistant turn, then a short user turn asking to carry on exactly where it
stopped, the alternative the docs give (platform.claude.com/docs/en/build-with-claude/
working-with-messages, "prefill and its alternatives", read 2026-12-08). Either way the runner
joins the new text to the kept text in one reply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .catalog import NEWER_TOKENIZER_FACTOR

# Per-message overhead of the Messages API framing.
MESSAGE_OVERHEAD_TOKENS = 4
SUMMARY_INTRO = (
    "Summary of the earlier part of this conversation. The messages it covers are not repeated "
    "below; rely on this summary for them.\n\n"
)
CONTINUE_INSTRUCTION = (
    "Your previous reply was cut off. Continue it from exactly where it stopped, as if it had never been "
    "interrupted: do not repeat anything already written, and add no preamble or comment. If it stopped "
    "mid-word or mid-sentence, start with the rest of that word or sentence."
)


def estimate_tokens(text: str, factor: Decimal | float = NEWER_TOKENIZER_FACTOR) -> int:
    """Tokens of `text` for a model whose tokenizer counts `factor` times the older one (which
    counts about four UTF-8 bytes a token)."""
    if not text:
        return 0
    units = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return -(-units * int(Decimal(factor) * 100) // 400)


def continuation_turns(kept: str, *, prefill: bool) -> list[dict[str, Any]]:
    """The turns that follow the person's message when a reply is continued."""
    if prefill:
        # The API refuses a final assistant turn that ends with whitespace.
        return [{"role": "assistant", "content": kept.rstrip()}]
    return [{"role": "assistant", "content": kept}, {"role": "user", "content": CONTINUE_INSTRUCTION}]


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


def _message_tokens(message: dict[str, Any], factor: Decimal | float) -> int:
    return estimate_tokens(message["content"], factor) + MESSAGE_OVERHEAD_TOKENS


def build(
    *,
    system_prompt: str,
    summary: str,
    history: list[dict[str, Any]],
    policy: CachePolicy,
    max_prompt_tokens: int,
    tokenizer_factor: Decimal | float = NEWER_TOKENIZER_FACTOR,
    continue_from: str = "",
    prefill: bool = False,
) -> Prompt:
    """Build the request for a reply to `history` (alternating turns, ending with the person's).

    `max_prompt_tokens` is what the context window leaves after the reply's max_tokens: oldest
    turns are dropped (never the newest message) until the estimate fits. `continue_from` is
    the kept text of a reply being continued (see the module docstring); its turns come after
    the newest message's cache breakpoint, so a Continue reads the prefix its reply wrote.
    """
    prompt = Prompt()
    factor = tokenizer_factor
    system_texts = [t for t in (system_prompt.strip(), (SUMMARY_INTRO + summary.strip()) if summary.strip() else "") if t]
    system_tokens = sum(estimate_tokens(t, factor) for t in system_texts)
    sizes = [_message_tokens(m, factor) for m in history]
    tail = continuation_turns(continue_from, prefill=prefill) if continue_from else []
    total = system_tokens + sum(sizes) + sum(_message_tokens(m, factor) for m in tail)
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
        cumulative += estimate_tokens(text, factor)
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
    prompt.messages += tail
    return prompt
