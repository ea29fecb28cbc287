"""What the real Messages API refuses, and how today's models think, per model.

The rules come from the capability table Chatsite's catalogue is seeded from
(`conversations.catalog.CAPABILITIES`, plain data: no Django here), so a test against the fake
is a test against the documented behaviour each row cites. Messages are the real API's wording
where it is on record (the docs or other projects' bug reports, noted per message); a model
outside the table (older ids some tests use) keeps the fake's old, lenient behaviour, apart from
the checks every model has (unknown fields, thinking-block signatures, whitespace after a
prefill).

Thinking, as the fake plays it: a model that thinks by default (or a request that asks for
adaptive thinking) sends one thinking block before the text. Its length is a reply's
`"thinking"` (tokens as an int, or the text itself) or, by default, THINKING_TOKENS for the
request's effort; it counts toward max_tokens, so a small max_tokens can leave no text at all
(stop_reason "max_tokens"). With display "omitted" (every catalogue model's default) the block
carries only its signature. Signatures are bound to the model and the account (API key) that
got them: replayed to another model or account they are refused, as Anthropic refuses them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from conversations import catalog

DEFAULT_EFFORT = "high"
# The fake's thinking length (tokens) at each effort when a reply does not script one. Not
# Anthropic's numbers (those vary per request): enough that a 30-token title request at the
# default effort of a model that thinks gets no text, as happens for real.
THINKING_TOKENS = {"low": 16, "medium": 48, "high": 96, "xhigh": 192, "max": 384}

# Top-level request fields the API knows; anything else is "Extra inputs are not permitted".
KNOWN_FIELDS = frozenset({
    "model", "messages", "max_tokens", "system", "stream", "metadata", "stop_sequences", "temperature", "top_p",
    "top_k", "thinking", "tools", "tool_choice", "cache_control", "output_config", "service_tier", "container",
    "context_management", "mcp_servers", "inference_geo", "fallbacks",
})

PREFILL_REFUSED = ("This model does not support assistant message prefill. "
                   "The conversation must end with a user message.")
# Observed on 5.x models (e.g. github.com/mnfst/modelparams.dev/pull/238, probed 2026-08-17):
# temperature is accepted only at its default 1; top_p and top_k at any value are refused.
SAMPLING_REFUSED = "`{}` is deprecated for this model."
# Reported verbatim by many projects (e.g. github.com/earendil-works/pi/issues/3297).
BUDGET_REFUSED = ('"thinking.type.enabled" is not supported for this model. '
                  'Use "thinking.type.adaptive" and "output_config.effort" to control thinking behavior.')
# The first sentence is on record (github.com/cline/cline/issues/13203); the docs say Sonnet
# 5.5's message points to between_tools: the rest of each message is the fake's wording.
OFF_REFUSED = '"thinking.type.{}" is not supported for this model. {}'
# github.com/anthropics/claude-code/issues/81084 (Opus 5 at xhigh with thinking disabled).
OFF_EFFORT_REFUSED = ("output_config.effort '{}' is not supported when thinking is disabled on this model. "
                      "Use effort 'high' or below, or enable thinking.")
# github.com/anthropics/claude-code/issues/10627 and many others.
SIGNATURE_REFUSED = "messages.{}.content.{}: Invalid `signature` in `thinking` block"
TRAILING_WHITESPACE = "messages: final assistant content cannot end with trailing whitespace"
PROMPT_TOO_LONG = "prompt is too long: {} tokens > {} maximum"

_SECRET = b"fakeanthropic-thinking-signatures"


def capabilities(model: str) -> catalog.Capabilities | None:
    return catalog.CAPABILITIES.get(model)


def model_limits(model: str) -> dict[str, int] | None:
    row = next((m for m in catalog.MODELS if m["model_id"] == model), None)
    return {"context_window": row["context_window"], "max_output_tokens": row["max_output_tokens"]} if row else None


def tokenizer_hundredths(model: str) -> int:
    """The model's tokenizer factor in hundredths (integer arithmetic keeps counts exact)."""
    caps = capabilities(model)
    return int(caps.tokenizer_factor * 100) if caps else 100


# --- thinking signatures ---------------------------------------------------------------------


def account_of(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


def sign(model: str, account: str, thinking: str) -> str:
    mac = hmac.new(_SECRET, "\x00".join((model, account, thinking)).encode("utf-8", "surrogatepass"), hashlib.sha256)
    return "fake1" + base64.b64encode(mac.digest()).decode()


def signature_ok(model: str, account: str, thinking: str, signature: Any) -> bool:
    return isinstance(signature, str) and hmac.compare_digest(signature, sign(model, account, thinking))


# --- the request -----------------------------------------------------------------------------


def _effort(body: dict, caps: catalog.Capabilities | None) -> str:
    config = body.get("output_config")
    effort = config.get("effort") if isinstance(config, dict) else None
    return effort if isinstance(effort, str) else (caps.default_effort if caps else DEFAULT_EFFORT)


def _final_assistant_text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    texts = [b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"] if isinstance(content, list) else []
    return texts[-1] if texts else ""


def check(body: dict, *, account: str) -> str | None:
    """The 400 message the real API gives this (shape-valid) request, or None."""
    for name in body:
        if name not in KNOWN_FIELDS:
            return f"{name}: Extra inputs are not permitted"
    model: str = body["model"]
    caps = capabilities(model)
    messages = body["messages"]

    config = body.get("output_config")
    if config is not None:
        if not isinstance(config, dict):
            return "output_config: Input should be a valid dictionary"
        effort = config.get("effort")
        if effort is not None and effort not in catalog.EFFORTS:
            return "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'"
    thinking = body.get("thinking")
    kind = None
    if thinking is not None:
        kind = thinking.get("type") if isinstance(thinking, dict) else None
        if kind not in ("adaptive", "enabled", "disabled", "between_tools"):
            return "thinking.type: Input should be 'adaptive', 'enabled', 'disabled' or 'between_tools'"
        display = thinking.get("display")
        if display is not None and display not in ("summarized", "omitted", "updates"):
            return "thinking.display: Input should be 'summarized', 'omitted' or 'updates'"

    if caps is not None:
        problem = _check_model_rules(body, caps, kind)
        if problem:
            return problem
        limits = model_limits(model)
        if limits and body.get("max_tokens", 0) > limits["max_output_tokens"]:
            return (f"max_tokens: {body['max_tokens']} > {limits['max_output_tokens']}, which is the maximum allowed "
                    f"number of output tokens for {model}")
    elif messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "assistant":
        text = _final_assistant_text(messages[-1])
        if text != text.rstrip():
            return TRAILING_WHITESPACE

    for i, message in enumerate(messages):
        content = message.get("content")
        if message.get("role") != "assistant" or not isinstance(content, list):
            continue
        for j, block in enumerate(content):
            if isinstance(block, dict) and block.get("type") in ("thinking", "redacted_thinking"):
                if not signature_ok(model, account, str(block.get("thinking", "")), block.get("signature")):
                    return SIGNATURE_REFUSED.format(i, j)
    return None


def _check_model_rules(body: dict, caps: catalog.Capabilities, kind: str | None) -> str | None:
    if not caps.accepts_prefill and body["messages"][-1].get("role") == "assistant":
        return PREFILL_REFUSED
    if not caps.sampling_parameters:
        temperature = body.get("temperature")
        if temperature is not None and temperature != 1:
            return SAMPLING_REFUSED.format("temperature")
        for name in ("top_p", "top_k"):
            if body.get(name) is not None:
                return SAMPLING_REFUSED.format(name)
    if kind == "enabled" and not caps.budget_tokens:
        return BUDGET_REFUSED
    if kind in ("disabled", "between_tools"):
        if kind != caps.thinking_off:
            if caps.thinking_off == "between_tools":
                hint = 'Use "thinking.type.between_tools" to turn off up-front thinking.'
            elif caps.thinking_off:
                hint = f'Use "thinking.type.{caps.thinking_off}" to turn thinking off.'
            else:
                hint = ('Thinking cannot be turned off on this model. Use "thinking.type.adaptive" and '
                        '"output_config.effort" to control thinking behavior.')
            return OFF_REFUSED.format(kind, hint)
        effort = _effort(body, caps)
        if catalog.EFFORTS.index(effort) > catalog.EFFORTS.index(caps.thinking_off_max_effort):
            return OFF_EFFORT_REFUSED.format(effort)
    return None


# --- what the model sends back ---------------------------------------------------------------


@dataclass(frozen=True)
class Thinking:
    """The thinking block a reply starts with (tokens == 0: none)."""

    tokens: int
    text: str       # what the block shows ("" when the display omits it)
    signature: str


NO_THINKING = Thinking(tokens=0, text="", signature="")
_THOUGHT = ("Considering", "what", "the", "person", "asked", "and", "how", "best", "to", "answer", "it.")


def thinking_for(body: dict, reply: dict, *, account: str, count_tokens) -> Thinking:
    """Whether and how much this reply thinks. `count_tokens(text)` is the fake's output count."""
    model: str = body["model"]
    caps = capabilities(model)
    thinking = body.get("thinking") if isinstance(body.get("thinking"), dict) else {}
    kind = thinking.get("type")
    if kind in ("disabled", "between_tools"):
        return NO_THINKING  # (between_tools: no tools here, so nothing to think between)
    thinks = kind in ("adaptive", "enabled") or (kind is None and caps is not None and caps.thinks_by_default)
    scripted = reply.get("thinking")
    if not thinks or scripted is False or scripted == 0:
        return NO_THINKING
    if isinstance(scripted, str):
        summary = scripted
        tokens = max(1, count_tokens(summary))
    else:
        tokens = int(scripted) if isinstance(scripted, int) and scripted > 0 else THINKING_TOKENS[_effort(body, caps)]
        summary = " ".join(_THOUGHT[i % len(_THOUGHT)] for i in range(tokens))  # one fake token a word
    display = reply.get("display") or thinking.get("display") or (caps.thinking_display if caps else "summarized")
    shown = summary if display == "summarized" else ""
    return Thinking(tokens=tokens, text=shown, signature=sign(model, account, shown))
