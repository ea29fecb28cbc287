"""The Claude models a fresh install offers, with Anthropic's public prices.

Source: https://platform.claude.com/docs/en/about-claude/pricing and the model overview pages
(platform.claude.com/docs/en/models/*/overview), read on 2026-11-25. USD per million tokens.
- Sonnet 5.5's cache-read price was cut from $0.20 to $0.10 on 2026-10-07.
- Haiku 5.5 bills prompts over 100,000 tokens (input + cache reads + cache writes) at 5× every
  rate ($0.50 / $2.50 …): the long-prompt threshold and multiplier below.
- Minimum cacheable prompt lengths are not published for the 5.5 models at the time of
  writing; the values here follow the previous generation (Opus 5: 512; Sonnet 5: 1,024) and
  are editable in the admin.

Plain data: the seeding migration and the test fixtures both read it. Admins edit prices in
Django admin afterwards; a reply's cost is stored with the reply.
"""

from __future__ import annotations

from decimal import Decimal as D

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
    existing = set(model_class.objects.values_list("model_id", flat=True))
    taken_default = model_class.objects.filter(is_default=True).exists()
    taken_utility = model_class.objects.filter(is_utility=True).exists()
    created = 0
    for row in MODELS:
        if row["model_id"] in existing:
            continue
        data = dict(row)
        data["is_default"] = data["is_default"] and not taken_default
        data["is_utility"] = data["is_utility"] and not taken_utility
        model_class.objects.create(**data)
        created += 1
    return created
