"""The ledger entry of a utility call (a summary, a title), written before the call is made.

Anthropic bills a call that completes upstream even when its caller is gone: a Celery worker
killed while the summary call was in flight left no trace in the ledger (11 calls reached the
upstream, 8 were billed here). So the entry is written first, with an estimate (the prompt's
estimated tokens, and max_tokens of output: at most what it can cost), and replaced by the
real usage when the answer comes. A call the API refused (an HTTP error status) costs nothing
and its entry goes; one that ended in a timeout or a dropped connection may have completed
upstream, and keeps its estimate, marked as such.
"""

from __future__ import annotations

from collections.abc import Callable

from . import llm, prompting, services, utility
from .models import LLMModel
from .pricing import Prices


def estimate(*, model: LLMModel, system: str, prompt: str, text_tokens: int) -> llm.Usage:
    """What a utility call (utility.utility_complete) costs at most: its prompt, and all of its
    max_tokens as output."""
    factor = model.tokenizer_factor
    tokens = prompting.estimate_tokens(system, factor) + prompting.estimate_tokens(prompt, factor) + prompting.MESSAGE_OVERHEAD_TOKENS
    return llm.Usage(input_tokens=tokens, output_tokens=utility.utility_max_tokens(model=model, text_tokens=text_tokens))


def metered(call: Callable[[], llm.Completion], *, user_id: int, conversation_id: int | None, kind: str, prices: Prices,
            estimated: llm.Usage) -> llm.Completion:
    """Run `call` with its ledger entry written before and settled after."""
    record = services.usage_record(user_id=user_id, conversation_id=conversation_id, message_id=None, kind=kind, usage=estimated, prices=prices, estimated=True)
    try:
        completion = call()
    except llm.LLMError as exc:
        if exc.status is not None and exc.status != 200:
            services.usage_record_drop(record=record)
        raise
    services.usage_record_settle(record=record, usage=completion.usage, prices=prices)
    return completion
