"""Admin-edited rows read on every send (models and their prices, presets' cache settings,
spend limits),
kept a few seconds per process so a send costs no extra queries; admin edits apply within
CHATSITE_CATALOG_CACHE_SECONDS."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings

from .models import LLMModel, SystemPrompt

_cache: dict[tuple[str, Any], tuple[float, Any]] = {}


def cached(key: tuple[str, Any], load):
    now = time.monotonic()
    hit = _cache.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    value = load()
    _cache[key] = (now + settings.CHATSITE_CATALOG_CACHE_SECONDS, value)
    return value


def clear() -> None:
    _cache.clear()


def llm_model(model_id: str) -> LLMModel | None:
    return cached(("model", model_id), lambda: LLMModel.objects.filter(model_id=model_id).first())


def utility_model() -> LLMModel | None:
    return cached(("utility", None), lambda: LLMModel.objects.filter(is_utility=True).first())


def default_model() -> LLMModel | None:
    return cached(("default", None), lambda: LLMModel.objects.filter(enabled=True).order_by("-is_default", "sort_order").first())


def preset(preset_id: int | None) -> SystemPrompt | None:
    if not preset_id:
        return None
    return cached(("preset", preset_id), lambda: SystemPrompt.objects.filter(pk=preset_id).first())
