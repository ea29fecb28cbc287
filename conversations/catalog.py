"""The Claude models a fresh install offers, with Anthropic's public prices.

Source: https://platform.claude.com/docs/en/about-claude/pricing and the model overview pages
(platform.claude.com/docs/en/models/*/overview), read on 2026-11-25. USD per million tokens.
- Sonnet 5.5's cache-read price was cut from $0.20 to $0.10 on 2026-10-07.
- Haiku 5.5 bills prompts over 100,000 tokens (input + cache reads + cache writes) at 5× every
  rate ($0.50 / $2.50 …): the long-prompt threshold and multiplier below.
- Minimum cacheable prompt lengths are not published for the 5.5 models at the time of
  writing; the values here follow the previous generation (Opus 5: 512; Sonnet 5: 1,024) and
  are editable in the admin.

Plain data: the seeding migration, the test fixtures and the fake Anthropic server
(fakeanthropic, which must not import Django) all read it. Admins edit prices and behaviour in
Django admin afterwards; a reply's cost is stored with the reply.

`CAPABILITIES` is what each model accepts and does by default, as Anthropic documents it: the
app builds its requests from the copy of these fields on each `LLMModel` row (seeded from here,
editable in admin), and the fake rejects and streams by this table, so a test against the fake
is a test against these documented rules. Each row names the pages it was read from and when.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal as D

# How much more the tokenizer of Claude 4.7 and later models (every model in this catalogue)
# counts for the same text than the older one: "approximately 30% more tokens than on Claude
# Haiku 4.5" (platform.claude.com/docs/en/models/haiku-5-5/whats-new-haiku-5-5, read 2026-12-08;
# third-party write-ups of the Opus 4.7 launch quote 1.0-1.35x depending on content).
NEWER_TOKENIZER_FACTOR = D("1.30")

EFFORTS = ("low", "medium", "high", "xhigh", "max")

READ_ON = "2026-12-08"
_DOCS = "https://platform.claude.com/docs/en"
# Errors every 5.x model in the catalogue shares (each model's migration guide lists them as the
# settings that "return a 400 error"): thinking budgets, non-default sampling parameters and an
# assistant prefill.
_SHARED = f"{_DOCS}/build-with-claude/working-with-messages (prefill and its alternatives)"


@dataclass(frozen=True)
class Capabilities:
    """What one model accepts and does by default, as documented.

    accepts_prefill: a request may end with an assistant turn ("prefill"); otherwise 400
        "This model does not support assistant message prefill. The conversation must end with
        a user message."
    thinks_by_default: adaptive thinking runs when the request has no `thinking` field, and its
        tokens count toward max_tokens.
    thinking_off: the `thinking.type` that turns up-front thinking off ("disabled", or
        "between_tools" on Sonnet 5.5, where "disabled" is a 400); "" when it cannot be turned off.
    thinking_off_max_effort: thinking can be off only at this `output_config.effort` or lower.
    default_effort: the effort when the request names none.
    thinking_display: what a thinking block shows by default ("omitted": an empty `thinking`
        text and its signature; "summarized": a summary).
    sampling_parameters: non-default temperature/top_p/top_k are accepted (False: 400).
    budget_tokens: `thinking: {"type": "enabled", "budget_tokens": n}` is accepted (False: 400).
    tokenizer_factor: tokens counted for text the older tokenizer counts as one.
    sources: the pages read, on `read_on`.
    """

    model_id: str
    accepts_prefill: bool
    thinks_by_default: bool
    thinking_off: str
    default_effort: str
    sources: tuple[str, ...]
    thinking_off_max_effort: str = "high"
    thinking_display: str = "omitted"
    sampling_parameters: bool = False
    budget_tokens: bool = False
    tokenizer_factor: D = NEWER_TOKENIZER_FACTOR
    read_on: str = READ_ON


CAPABILITIES: dict[str, Capabilities] = {c.model_id: c for c in (
    Capabilities(
        # "Turn off up-front thinking with between_tools": "disabled" is a 400 that points to
        # between_tools, which works at effort low/medium/high; adaptive thinking is on by
        # default, default effort high; display omitted by default.
        model_id="claude-sonnet-5-5", accepts_prefill=False, thinks_by_default=True,
        thinking_off="between_tools", default_effort="high",
        sources=(f"{_DOCS}/models/sonnet-5-5/whats-new-sonnet-5-5", f"{_DOCS}/models/sonnet-5-5/migration-guide", _SHARED),
    ),
    Capabilities(
        # "Adaptive (always on)", default effort medium (model comparison table).
        model_id="claude-opus-5-5", accepts_prefill=False, thinks_by_default=True,
        thinking_off="", default_effort="medium",
        sources=(f"{_DOCS}/models/haiku-5-5/overview (comparison table)", f"{_DOCS}/build-with-claude/adaptive-thinking", _SHARED),
    ),
    Capabilities(
        # Adaptive thinking with effort (default medium); thinking text omitted by default; ~30%
        # more tokens than Haiku 4.5. That thinking may be disabled at effort high or lower is
        # from the team's notes on today's models and a third-party docs digest (docs.apiyi.com,
        # 2026-11-09), not a page read here: the live check (manage.py check_anthropic) confirms it per key.
        model_id="claude-haiku-5-5", accepts_prefill=False, thinks_by_default=True,
        thinking_off="disabled", default_effort="medium",
        sources=(f"{_DOCS}/models/haiku-5-5/whats-new-haiku-5-5", f"{_DOCS}/models/haiku-5-5/overview", _SHARED),
    ),
    Capabilities(
        # "Adaptive (always on)", default effort high; "thinking.type.disabled" is a 400.
        model_id="claude-fable-5-1", accepts_prefill=False, thinks_by_default=True,
        thinking_off="", default_effort="high",
        sources=(f"{_DOCS}/models/haiku-5-5/overview (comparison table)", f"{_DOCS}/build-with-claude/adaptive-thinking", _SHARED),
    ),
    Capabilities(
        # "Thinking on by default" (new in Opus 5), "thinking can be disabled only at effort
        # high or below", default effort high.
        model_id="claude-opus-5", accepts_prefill=False, thinks_by_default=True,
        thinking_off="disabled", default_effort="high",
        sources=(f"{_DOCS}/models/opus-5/whats-new-opus-5", f"{_DOCS}/models/opus-5/migration-guide", _SHARED),
    ),
)}

# The LLMModel fields copied from CAPABILITIES (admins may edit them afterwards).
MODEL_FIELDS = ("accepts_prefill", "thinks_by_default", "thinking_off", "tokenizer_factor")


def capability_fields(model_id: str) -> dict:
    """The LLMModel field values for a model in the table ({} for one that is not)."""
    caps = CAPABILITIES.get(model_id)
    return {name: getattr(caps, name) for name in MODEL_FIELDS} if caps else {}

MODELS: list[dict] = [
    {
        "model_id": "claude-sonnet-5-5", "display_name": "Claude Sonnet 5.5", "sort_order": 10,
        "context_window": 1_000_000, "max_output_tokens": 128_000,
        "input_price": D("2"), "output_price": D("10"), "cache_write_5m_price": D("2.50"),
        "cache_write_1h_price": D("4"), "cache_read_price": D("0.10"),
        "min_cache_tokens": 1024, "enabled": True, "is_default": True, "is_utility": False,
    },
    {
        "model_id": "claude-opus-5-5", "display_name": "Claude Opus 5.5", "sort_order": 20,
        "context_window": 1_000_000, "max_output_tokens": 128_000,
        "input_price": D("4"), "output_price": D("20"), "cache_write_5m_price": D("5"),
        "cache_write_1h_price": D("8"), "cache_read_price": D("0.20"),
        "min_cache_tokens": 512, "enabled": True, "is_default": False, "is_utility": False,
    },
    {
        "model_id": "claude-haiku-5-5", "display_name": "Claude Haiku 5.5", "sort_order": 30,
        "context_window": 1_000_000, "max_output_tokens": 128_000,
        "input_price": D("0.10"), "output_price": D("0.50"), "cache_write_5m_price": D("0.125"),
        "cache_write_1h_price": D("0.20"), "cache_read_price": D("0.01"),
        "long_prompt_threshold": 100_000, "long_prompt_multiplier": D("5"),
        "min_cache_tokens": 1024, "enabled": True, "is_default": False, "is_utility": True,
    },
    {
        "model_id": "claude-fable-5-1", "display_name": "Claude Fable 5.1", "sort_order": 40,
        "context_window": 1_000_000, "max_output_tokens": 128_000,
        "input_price": D("10"), "output_price": D("50"), "cache_write_5m_price": D("12.50"),
        "cache_write_1h_price": D("20"), "cache_read_price": D("0.25"),
        "min_cache_tokens": 512, "enabled": False, "is_default": False, "is_utility": False,
    },
    {
        "model_id": "claude-opus-5", "display_name": "Claude Opus 5 (legacy)", "sort_order": 50,
        "context_window": 1_000_000, "max_output_tokens": 128_000,
        "input_price": D("5"), "output_price": D("25"), "cache_write_5m_price": D("6.25"),
        "cache_write_1h_price": D("10"), "cache_read_price": D("0.50"),
        "min_cache_tokens": 512, "enabled": False, "is_default": False, "is_utility": False,
    },
]


def seed(model_class) -> int:
    """Create the catalogue's models that are missing (by model id); return how many.

    Takes the model class so the migration can pass its historical model.
    """
    fields = {f.name for f in model_class._meta.get_fields()}
    existing = set(model_class.objects.values_list("model_id", flat=True))
    taken_default = model_class.objects.filter(is_default=True).exists()
    taken_utility = model_class.objects.filter(is_utility=True).exists()
    created = 0
    for row in MODELS:
        if row["model_id"] in existing:
            continue
        data = {**row, **capability_fields(row["model_id"])}
        # An older migration passes a historical model that lacks the newer fields.
        data = {k: v for k, v in data.items() if k in fields}
        data["is_default"] = data["is_default"] and not taken_default
        data["is_utility"] = data["is_utility"] and not taken_utility
        model_class.objects.create(**data)
        created += 1
    return created
