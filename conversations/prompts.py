"""System prompt presets: saving with a version history, the default, previews and diffs.

Every saved change of a preset's name or text becomes a numbered `SystemPromptVersion` (who,
when, what it said); saving without a change adds none. A new conversation records the version
it started from, so an admin can always tell which instructions a conversation was given.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from . import prompting
from .models import LLMModel, SystemPrompt, SystemPromptVersion

# The stand-in first message of a preview: the system blocks do not depend on it.
_PREVIEW_MESSAGE = "Hello"


def _normalized(text: str) -> str:
    # Browsers post textareas with CRLF; the same words must not count as a change.
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _author(user: AbstractBaseUser | None) -> AbstractBaseUser | None:
    return user if user is not None and getattr(user, "is_authenticated", False) else None


def system_prompt_latest_version(*, prompt: SystemPrompt) -> SystemPromptVersion | None:
    return SystemPromptVersion.objects.filter(prompt=prompt).order_by("-number").first()


def _matches(version: SystemPromptVersion | None, prompt: SystemPrompt) -> bool:
    return version is not None and version.name == prompt.name and version.text == prompt.text


def _record_version(*, prompt: SystemPrompt, user: AbstractBaseUser | None) -> SystemPromptVersion | None:
    """The next version if name or text differ from the latest one; None otherwise.

    Call inside a transaction: the prompt's row is locked so two saves at once cannot both
    take the same number (PostgreSQL; SQLite serialises writers anyway).
    """
    list(SystemPrompt.objects.select_for_update().filter(pk=prompt.pk).values_list("pk", flat=True))
    latest = system_prompt_latest_version(prompt=prompt)
    if _matches(latest, prompt):
        return None
    return SystemPromptVersion.objects.create(
        prompt=prompt, number=(latest.number if latest else 0) + 1, name=prompt.name, text=prompt.text, created_by=_author(user),
    )


def system_prompt_save(*, prompt: SystemPrompt, user: AbstractBaseUser | None) -> SystemPromptVersion | None:
    """Save the preset; returns the new version when its name or text changed, else None.

    A preset saved as the default takes over from the previous default (there is only one).
    """
    prompt.text = _normalized(prompt.text)
    with transaction.atomic():
        if prompt.is_default:
            SystemPrompt.objects.filter(is_default=True).exclude(pk=prompt.pk).update(is_default=False)
        prompt.save()
        return _record_version(prompt=prompt, user=user)


def system_prompt_version_current(*, prompt: SystemPrompt) -> SystemPromptVersion:
    """The version matching the preset as it is now (one query in the usual case).

    A preset changed outside the admin (shell, fixtures, an old database) gets its version
    here, without an author, so a conversation always records what it started from.
    """
    latest = system_prompt_latest_version(prompt=prompt)
    if _matches(latest, prompt):
        return latest  # type: ignore[return-value]
    try:
        with transaction.atomic():
            created = _record_version(prompt=prompt, user=None)
    except IntegrityError:  # another request numbered the same version first
        created = None
    return created or system_prompt_latest_version(prompt=prompt)  # type: ignore[return-value]


def system_prompt_restore(*, prompt: SystemPrompt, version: SystemPromptVersion, user: AbstractBaseUser | None) -> SystemPromptVersion | None:
    """Make an old version's name and text current again, as a new version (history is never rewritten)."""
    if version.prompt_id != prompt.pk:
        raise ValidationError("That version belongs to another system prompt.")
    if version.name != prompt.name and SystemPrompt.objects.filter(name=version.name).exclude(pk=prompt.pk).exists():
        raise ValidationError(f"Another system prompt is now called “{version.name}”; rename it first.")
    prompt.name, prompt.text = version.name, version.text
    return system_prompt_save(prompt=prompt, user=user)


def system_prompt_make_default(*, prompt: SystemPrompt) -> None:
    """The one preset preselected for new conversations (the database allows only one)."""
    if not prompt.is_active:
        raise ValidationError(f"“{prompt.name}” is not active; activate it before making it the default.")
    with transaction.atomic():
        # Clear the old default first: the partial unique index is checked per statement.
        SystemPrompt.objects.filter(is_default=True).exclude(pk=prompt.pk).update(is_default=False)
        SystemPrompt.objects.filter(pk=prompt.pk).update(is_default=True)
    prompt.is_default = True


# --- reads for the admin ---------------------------------------------------------------------


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "hunk", "add", "del" or "same"
    text: str


@dataclass(frozen=True)
class VersionChange:
    version: SystemPromptVersion
    previous: SystemPromptVersion | None
    name_changed: bool
    lines: list[DiffLine]

    @property
    def added(self) -> int:
        return sum(1 for line in self.lines if line.kind == "add")

    @property
    def removed(self) -> int:
        return sum(1 for line in self.lines if line.kind == "del")


def text_diff(*, old: str, new: str, context: int = 3) -> list[DiffLine]:
    """A unified diff of two texts as plain rows (the template escapes them)."""
    rows: list[DiffLine] = []
    for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=context):
        if line.startswith(("---", "+++")) and not rows:
            continue  # the file headers; the page names the versions itself
        if line.startswith("@@"):
            rows.append(DiffLine("hunk", line))
        elif line.startswith("+"):
            rows.append(DiffLine("add", line[1:]))
        elif line.startswith("-"):
            rows.append(DiffLine("del", line[1:]))
        else:
            rows.append(DiffLine("same", line[1:]))
    return rows


def version_change(*, version: SystemPromptVersion, previous: SystemPromptVersion | None) -> VersionChange:
    return VersionChange(
        version=version,
        previous=previous,
        name_changed=previous is not None and previous.name != version.name,
        lines=text_diff(old=previous.text if previous else "", new=version.text),
    )


def system_prompt_history(*, prompt: SystemPrompt) -> list[VersionChange]:
    """Every version, newest first, each with its diff against the one before (one query)."""
    versions = list(SystemPromptVersion.objects.filter(prompt=prompt).select_related("created_by").order_by("number"))
    changes = [version_change(version=v, previous=versions[i - 1] if i else None) for i, v in enumerate(versions)]
    changes.reverse()
    return changes


@dataclass(frozen=True)
class ModelFit:
    model: LLMModel
    long_enough: bool


@dataclass(frozen=True)
class PromptPreview:
    text: str
    estimated_tokens: int
    characters: int
    lines: int
    model: LLMModel | None
    cache_enabled: bool  # for this preset and on this server
    cache_ttl: str
    long_enough: bool  # for the default model's minimum cacheable prefix
    system: list[dict[str, Any]]  # the request's `system` parameter, as sent
    fits: list[ModelFit]

    @property
    def will_cache(self) -> bool:
        return self.cache_enabled and self.long_enough

    @property
    def system_json(self) -> str:
        return json.dumps(self.system, indent=2, ensure_ascii=False)

    @property
    def min_cache_tokens(self) -> int | None:
        return self.model.min_cache_tokens if self.model else None


def system_prompt_preview(*, text: str, cache_enabled: bool = True, cache_ttl: str = "5m") -> PromptPreview:
    """What a conversation with this preset sends as its system prompt, for the default model."""
    text = _normalized(text)
    # Read fresh (not modelcache): the admin may have just been editing these rows.
    models = list(LLMModel.objects.filter(enabled=True).order_by("-is_default", "sort_order", "display_name"))
    model = models[0] if models else None
    enabled = bool(settings.CHATSITE_PROMPT_CACHING and cache_enabled)
    min_tokens = model.min_cache_tokens if model else prompting.CachePolicy().min_tokens
    factor = model.tokenizer_factor if model else prompting.NEWER_TOKENIZER_FACTOR
    built = prompting.build(
        system_prompt=text, summary="", history=[{"role": "user", "content": _PREVIEW_MESSAGE}],
        policy=prompting.CachePolicy(enabled=enabled, ttl=cache_ttl, min_tokens=min_tokens),
        max_prompt_tokens=10**9, tokenizer_factor=factor,
    )
    tokens = prompting.estimate_tokens(text.strip(), factor)
    return PromptPreview(
        text=text, estimated_tokens=tokens, characters=len(text), lines=len(text.splitlines()),
        model=model, cache_enabled=enabled, cache_ttl=cache_ttl, long_enough=tokens >= min_tokens,
        system=built.system,
        fits=[ModelFit(model=m, long_enough=prompting.estimate_tokens(text.strip(), m.tokenizer_factor) >= m.min_cache_tokens) for m in models],
    )
