"""One generation, start to finish: call Claude, retry before the first token, persist, announce.

Runs as its own asyncio task in the hub, so a closed tab does not stop it; "stop" cancels it
explicitly. Whatever happens (done, stopped, upstream failure, cancellation) the reply is
finished exactly once in the database and every follower gets exactly one final frame.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

from channels.layers import get_channel_layer
from django.conf import settings

from . import fanout, frames, llm, renderpool, services
from .hub import Hub, Run
from .models import Message
from .pricing import cost_of

log = logging.getLogger(__name__)



def _backoff(attempt: int, hint: float | None) -> float:
    if hint is not None and hint > 0:
        return hint
    return min(0.5 * 2**attempt, 8.0) * (0.75 + random.random() / 4)


async def run_generation(hub: Hub, run: Run) -> None:
    spec = run.spec
    on_text = hub.appender(run)
    result = llm.StreamResult()
    status, error_code, error = Message.Status.COMPLETE, "", ""
    # A Continue's request already ends with the kept text and what the model needs to carry it
    # on (prompting.continuation_turns); its new text is appended to the kept text (initial_text).
    messages = spec.messages
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.CHATSITE_RETRY_BUDGET_SECONDS
    attempt = 0
    try:
        while True:
            received_before = run.length
            try:
                result = llm.StreamResult()
                await llm.stream_message(
                    model=spec.model, system=spec.system, messages=messages, max_tokens=spec.max_tokens, on_text=on_text, result=result
                )
                if result.stop_reason == "max_tokens":
                    error_code, error = "max_tokens", "The reply reached the maximum length and was cut off. You can continue it."
                break
            except llm.LLMError as exc:
                delay = _backoff(attempt, exc.retry_after)
                if exc.retryable and run.length == received_before == len(spec.initial_text) and loop.time() + delay < deadline:
                    attempt += 1
                    log.info("Generation %s: %s before the first token, retry %d in %.2fs", run.gid, exc.code, attempt, delay)
                    await asyncio.sleep(delay)
                    continue
                status, error_code, error = Message.Status.ERROR, exc.code, exc.message
                break
    except asyncio.CancelledError:
        if run.stop_requested:
            status, error_code, error = Message.Status.STOPPED, "", ""
        else:
            # The process is shutting down: record what we have; the reaper would do it otherwise.
            status, error_code = Message.Status.INTERRUPTED, "interrupted"
            error = "The server stopped while this reply was being written. The text so far is kept; you can retry."
    except Exception:
        log.exception("Generation %s crashed", run.gid)
        status, error_code, error = Message.Status.ERROR, "internal", "Something went wrong on the server while writing this reply."
    usage = result.usage
    if status != Message.Status.COMPLETE and usage.output_tokens <= 1:
        usage.output_tokens = result.text_deltas
    await asyncio.shield(_finish(hub, run, status=status, usage=usage, stop_reason=result.stop_reason, error_code=error_code, error=error))


async def _finish(hub: Hub, run: Run, *, status: str, usage: llm.Usage, stop_reason: str, error_code: str, error: str) -> None:
    await hub.flush(run)
    spec = run.spec
    # The text is read here, on the loop: Run is not thread-safe (text() compacts in place).
    content = run.text()
    # Store and render at the same time: the rendering runs in a helper process (renderpool).
    stored, rendered = await asyncio.gather(
        hub.endings.submit(Ending(spec=spec, content=content, status=status, usage=usage, stop_reason=stop_reason, error_code=error_code, error=error)),
        renderpool.render(content),
        return_exceptions=True,
    )
    if isinstance(rendered, str):
        html = rendered
    else:  # a renderer bug must not cost the reply: show its text as it is, escaped
        log.error("Could not render the end of generation %s", run.gid, exc_info=rendered)
        html = renderpool.plain_html(content)
    if isinstance(stored, BaseException):
        log.error("Could not store the end of generation %s; the reaper will mark it interrupted", run.gid, exc_info=stored)
        end = _end(run, content=content, html=html, status=Message.Status.ERROR, usage={}, error_code="internal", error="The reply could not be saved.")
    else:
        end = _end(run, content=content, html=html, status=status, usage=stored, error_code=error_code, error=error)
    await hub.finish(run, end)
    try:
        await fanout.tell_user(get_channel_layer(), hub.sockets, spec.owner_id, {"type": "chat.generation_end", "end": end})
    except Exception:
        log.exception("Could not announce the end of generation %s", run.gid)
    if not isinstance(stored, BaseException):
        hub.queue_followups(services.reply_followups(spec=spec, status=status, usage=usage))


@dataclass(frozen=True)
class Ending:
    """What persist_final_many writes for one generation."""

    spec: services.GenerationSpec
    content: str
    status: str
    usage: llm.Usage
    stop_reason: str
    error_code: str
    error: str


def persist_final_many(endings: list[Ending]) -> list[dict | BaseException]:
    """Write the final state of each generation; return the usage totals each end frame shows.

    New replies are written together (services.generation_finish_many: a burst of replies
    ending at once costs a few statements); a continued reply adds its usage to the stored
    counters on its own.
    """
    fresh = [e for e in endings if not e.spec.initial_text]
    services.generation_finish_many([
        services.Finish(
            message_id=e.spec.message_id, conversation_id=e.spec.conversation_id, generation_id=e.spec.generation_id,
            content=e.content, status=e.status, usage=e.usage, stop_reason=e.stop_reason or "", error_code=e.error_code,
            error=e.error, owner_id=e.spec.owner_id, prices=e.spec.prices, summary_id=e.spec.summary_id,
        )
        for e in fresh
    ])
    results: list[dict | BaseException] = []
    for e in endings:
        try:
            results.append(_persist_one(e))
        except Exception as exc:  # noqa: BLE001 - that generation's own failure
            results.append(exc)
    return results


def _persist_one(e: Ending) -> dict:
    spec = e.spec
    if spec.initial_text:
        services.generation_finish(
            message_id=spec.message_id, conversation_id=spec.conversation_id, generation_id=spec.generation_id,
            content=e.content, status=e.status, usage=e.usage, stop_reason=e.stop_reason or "", error_code=e.error_code,
            error=e.error, owner_id=spec.owner_id, prices=spec.prices, summary_id=spec.summary_id, accumulate=True,
        )
        # A continued reply's usage adds up over its generations: read the stored total.
        totals = Message.objects.filter(pk=spec.message_id).values(*_USAGE_FIELDS, "cost").first() or {}
        totals["cost"] = str(totals.get("cost", "0"))
    else:
        totals = {name: getattr(e.usage, name) for name in _USAGE_FIELDS}
        totals["cost"] = str(cost_of(e.usage, spec.prices).total) if spec.prices else "0"
    return totals


_USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def _end(run: Run, *, content: str, html: str, status: str, usage: dict, error_code: str, error: str) -> dict:
    spec = run.spec
    message = frames.finished_reply(
        message_id=spec.message_id, model=spec.model, generation_id=run.gid, parent_id=spec.parent_id,
        created_at=spec.created_at, status=status, html=html, usage=usage, error_code=error_code, error=error,
        context_note=spec.context_note,
    )
    return frames.end_frame(
        generation_id=run.gid, conversation_id=spec.conversation_id, conversation_title=spec.conversation_title,
        message=message, content_length=len(content),
    )


def start(hub: Hub, spec: services.GenerationSpec) -> Run:
    return hub.start(spec, run_generation)
