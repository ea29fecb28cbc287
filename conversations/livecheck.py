"""A live check of each model with the configured key: the requests Chatsite sends, sent for real.

For an operator who has just set ANTHROPIC_API_KEY (`manage.py check_anthropic`, or the "Test"
action on the models page in admin). Per model, a handful of small requests built by the same
code the app uses, each reported as passed or failed with the API's own message:

- reply: a streamed reply, as a conversation's first turn is built (prompting.build);
- continue: a stopped reply carried on (a prefill where the model accepts one, else the kept
  text and a request to carry on);
- title, summary: the utility calls, with the model's thinking settings (utility.py);
- cache: the same cacheable prefix sent twice, the second read back from the cache;
- tokens: the app's size estimate next to the API's count for the same prompt (the model's
  tokenizer factor is off if they differ much: it decides when to trim and compact).

The calls are billed to the key's account (a few thousand tokens per model, mostly the cached
prefix) and not recorded in Chatsite's usage ledger.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from decimal import Decimal

from asgiref.sync import async_to_sync
from django.conf import settings

from . import compaction, llm, prompting, titles
from .models import LLMModel
from .utility import utility_request

CHECK_SYSTEM = "You are helping an administrator check that the API works. Answer briefly."
REPLY_PROMPT = "Say hello in five words or fewer."
CONTINUE_QUESTION = "List the first eight prime numbers, separated by commas."
CONTINUE_KEPT = "2, 3, 5,"
TITLE_FIRST = "How do I keep basil alive on a windowsill?"
TITLE_REPLY = "Give it at least six hours of sun, water when the top of the soil is dry, and pinch off flowers."
SUMMARY_TRANSCRIPT = (
    "Person: I am planning a trip to Lisbon in May with my two children.\n\n"
    "Claude: May is mild in Lisbon. The Oceanarium and the tram 28 are popular with children.\n\n"
    "Person: We do not like crowds; we will skip the tram."
)
# Text of several scripts and code: the tokenizer factor must hold for more than English prose.
TOKEN_SAMPLE = (
    "The quarterly review covered revenue, hiring and the roadmap. " * 8
    + "会議では売上、採用、ロードマップについて話し合いました。" * 6
    + "def total(xs: list[int]) -> int:\n    return sum(x * 2 for x in xs if x > 0)\n" * 4
)
# The estimate may be up to this much above the API's count (trimming a little early is safe).
TOKENS_SLACK = Decimal("1.25")


@dataclass(frozen=True)
class CheckResult:
    model_id: str
    check: str
    ok: bool
    detail: str


def _short(text: str, limit: int = 60) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _reply_tokens(model: LLMModel) -> int:
    return min(settings.CHATSITE_MAX_TOKENS, model.max_output_tokens)


def _stream(model: LLMModel, prompt: prompting.Prompt) -> tuple[str, llm.StreamResult]:
    pieces: list[str] = []

    async def go() -> llm.StreamResult:
        return await llm.stream_message(
            model=model.model_id, system=prompt.system, messages=prompt.messages, max_tokens=_reply_tokens(model), on_text=pieces.append,
        )

    result = async_to_sync(go)()
    return "".join(pieces), result


def _built(model: LLMModel, question: str, *, continue_from: str = "") -> prompting.Prompt:
    return prompting.build(
        system_prompt=CHECK_SYSTEM, summary="", history=[{"role": "user", "content": question}],
        policy=prompting.CachePolicy(enabled=False), max_prompt_tokens=model.context_window,
        tokenizer_factor=model.tokenizer_factor, continue_from=continue_from, prefill=model.accepts_prefill,
    )


def check_reply(model: LLMModel) -> str:
    text, result = _stream(model, _built(model, REPLY_PROMPT))
    if not text.strip():
        raise AssertionError(f"no text (stop reason {result.stop_reason or 'none'})")
    return f"“{_short(text)}” ({result.usage.output_tokens} output tokens)"


def check_continue(model: LLMModel) -> str:
    text, result = _stream(model, _built(model, CONTINUE_QUESTION, continue_from=CONTINUE_KEPT))
    if not text.strip():
        raise AssertionError(f"no text (stop reason {result.stop_reason or 'none'})")
    how = "prefill" if model.accepts_prefill else "kept text + request to carry on"
    return f"{how}: “{CONTINUE_KEPT}{_short(text, 40)}”"


def check_title(model: LLMModel) -> str:
    completion = titles.title_completion(model=model, first=TITLE_FIRST, reply=TITLE_REPLY)
    title = titles.clean_title(completion.text)
    if not title:
        raise AssertionError(f"no title text (stop reason {completion.stop_reason or 'none'}, {completion.usage.output_tokens} output tokens)")
    return f"“{title}”"


def check_summary(model: LLMModel) -> str:
    completion = compaction.summary_completion(model=model, previous="", transcript=SUMMARY_TRANSCRIPT)
    if not completion.text.strip():
        raise AssertionError(f"no summary text (stop reason {completion.stop_reason or 'none'}, {completion.usage.output_tokens} output tokens)")
    return f"“{_short(completion.text)}”"


def _cacheable_system(model: LLMModel) -> list[dict]:
    """A system block past the model's minimum cacheable length, unique to this run."""
    sentence = "Chatsite checks prompt caching with this paragraph, repeated to pass the model's minimum length. "
    per = prompting.estimate_tokens(sentence, model.tokenizer_factor)
    text = f"Check {uuid.uuid4().hex}. " + sentence * (math.ceil(model.min_cache_tokens * 1.5 / per) + 1)
    return [{"type": "text", "text": text, "cache_control": {"type": "ephemeral", "ttl": "5m"}}]


def check_cache(model: LLMModel) -> str:
    system = _cacheable_system(model)
    request = utility_request(thinks_by_default=model.thinks_by_default, thinking_off=model.thinking_off, text_tokens=16,
                              thinking_room=settings.CHATSITE_UTILITY_THINKING_TOKENS)
    calls = [
        llm.complete(model=model.model_id, system=system, messages=[{"role": "user", "content": "Reply with OK."}],
                     max_tokens=request.max_tokens, options=request.options)
        for _ in range(2)
    ]
    written, read = calls[0].usage.cache_creation_input_tokens, calls[1].usage.cache_read_input_tokens
    if not read:
        raise AssertionError(f"the second request read nothing from the cache (first wrote {written} tokens)")
    return f"wrote {written:,} tokens, read {read:,} back"


def check_tokens(model: LLMModel) -> str:
    messages = [{"role": "user", "content": TOKEN_SAMPLE}]
    counted = llm.count_tokens(model=model.model_id, system=None, messages=messages)
    text_estimate = prompting.estimate_tokens(TOKEN_SAMPLE, model.tokenizer_factor)
    estimate = text_estimate + prompting.MESSAGE_OVERHEAD_TOKENS
    suggestion = (Decimal(model.tokenizer_factor) * counted / max(1, text_estimate)).quantize(Decimal("0.01"))
    if estimate < counted or estimate > counted * TOKENS_SLACK:
        raise AssertionError(
            f"estimate {estimate:,} vs the API's count {counted:,}: set the model's tokenizer factor to about {suggestion} "
            f"(now {model.tokenizer_factor})"
        )
    return f"estimate {estimate:,}, API count {counted:,} (tokenizer factor {model.tokenizer_factor})"


CHECKS = (
    ("reply", check_reply), ("continue", check_continue), ("title", check_title),
    ("summary", check_summary), ("cache", check_cache), ("tokens", check_tokens),
)


def check_model(model: LLMModel) -> list[CheckResult]:
    results = []
    for name, check in CHECKS:
        try:
            results.append(CheckResult(model.model_id, name, True, check(model)))
        except llm.LLMError as exc:
            results.append(CheckResult(model.model_id, name, False, llm.api_message(exc)))
        except AssertionError as exc:
            results.append(CheckResult(model.model_id, name, False, str(exc)))
    return results


def check_models(models: list[LLMModel]) -> list[CheckResult]:
    return [result for model in models for result in check_model(model)]


def endpoint_description() -> str:
    """Where the requests go, for the operator."""
    if settings.ANTHROPIC_BASE_URL:
        key = "key set" if settings.ANTHROPIC_API_KEY else "no key"
        return f"{settings.ANTHROPIC_BASE_URL} ({key})"
    return "the Anthropic API (ANTHROPIC_API_KEY set)" if settings.ANTHROPIC_API_KEY else ""
