"""One generation, start to finish: call Claude, retry before the first token, persist, announce.

Runs as its own asyncio task in the hub, so a closed tab does not stop it; "stop" cancels it
explicitly. Whatever happens (done, stopped, upstream failure, cancellation) the reply is
finished exactly once in the database and every follower gets exactly one final frame.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable
from dataclasses import dataclass

from channels.layers import get_channel_layer
from django.conf import settings

from . import errors, fanout, frames, llm, renderpool, services
from .hub import Hub, Run
from .models import Message
from .pricing import cost_of

log = logging.getLogger(__name__)



def _backoff(attempt: int, hint: float | None) -> float:
    if hint is not None and hint > 0:
        return hint
    return min(0.5 * 2**attempt, 8.0) * (0.75 + random.random() / 4)  # the SDK's schedule


async def run_generation(hub: Hub, run: Run) -> None:
    spec = run.spec
    on_text = hub.appender(run)
    result = llm.StreamResult()
    status, error_code, error = Message.Status.COMPLETE, "", ""
    # A Continue's request already ends with the kept text and what the model needs to carry it
    # on (prompting.continuation_turns); its new text is appended to the kept text (initial_text).
    messages = spec.messages
    loop = asyncio.get_running_loop()
    # Every wait before the reply fails counts against this budget, whatever `retry-after` says
    # (the SDK does not retry on its own: llm.async_client).
    deadline = loop.time() + settings.CHATSITE_RETRY_BUDGET_SECONDS
    attempt = 0
    try:
        while True:
            received_before = run.length
            try:
                result = llm.StreamResult()
                await _watched(hub, run, result, llm.stream_message(
                    model=spec.model, system=spec.system, messages=messages, max_tokens=spec.max_tokens, on_text=on_text, result=result
                ))
                if result.stop_reason == "max_tokens":
                    error_code, error = "max_tokens", "The reply reached the maximum length and was cut off. You can continue it."
                break
            except llm.LLMError as exc:
                # The server's hint is obeyed (trying sooner is pointless); our own backoff is
                # cut short so the last retry still fits in the budget.
                remaining = deadline - loop.time()
                delay = exc.retry_after if exc.retry_after and exc.retry_after > 0 else min(_backoff(attempt, None), remaining - 0.05)
                untouched = run.length == received_before == len(spec.initial_text)
                if exc.retryable and untouched and 0 < delay < remaining:
                    attempt += 1
                    log.info("Generation %s: %s before the first token, retry %d in %.2fs", run.gid, exc.code, attempt, delay)
                    await hub.notify(run, frames.notice(run.gid, "retrying", _retrying(exc, delay), seconds=delay))
                    await asyncio.sleep(delay)
                    continue
                status, error_code, error = Message.Status.ERROR, exc.code, exc.message
                if exc.retryable and untouched and exc.retry_after and delay >= remaining:
                    error = f"{exc.message} (Anthropic asked to wait {math.ceil(exc.retry_after)} s, longer than this server waits.)"
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


def _retrying(exc: llm.LLMError, delay: float) -> str:
    why = {"rate_limited": "Claude is busy (rate limit)", "overloaded": "Claude is busy (overloaded)"}.get(exc.code, "Claude did not answer")
    return f"{why}; retrying in {math.ceil(delay)} s…"


# How often a live attempt is looked at for a stall.
WATCH_SECONDS = 1.0


async def _watched(hub: Hub, run: Run, result: llm.StreamResult, stream: Awaitable[llm.StreamResult]) -> None:
    """Await one attempt; if Claude sends nothing (not even a ping) for a while, tell the
    followers, and past CHATSITE_STALL_TIMEOUT_SECONDS give up on the attempt (`timeout`:
    retried before the first token, else the reply ends with its text kept)."""
    task = asyncio.ensure_future(stream)
    loop = asyncio.get_running_loop()
    seen, quiet_since, noticed = -1, loop.time(), False
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=WATCH_SECONDS)
            if done:
                task.result()
                return
            now = loop.time()
            if result.events != seen:
                seen, quiet_since, noticed = result.events, now, False
                continue
            quiet = now - quiet_since
            if quiet >= settings.CHATSITE_STALL_TIMEOUT_SECONDS:
                log.warning("Generation %s: nothing from Claude for %.0f s; giving up on this attempt", run.gid, quiet)
                raise llm.LLMError(
                    "timeout", f"Claude stopped sending for {quiet:.0f} s, so the reply was ended here. The text so far is kept; you can continue it.",
                    retryable=True,
                )
            if quiet >= settings.CHATSITE_STALL_NOTICE_SECONDS and not noticed:
                noticed = True
                await hub.notify(run, frames.notice(run.gid, "stalled", f"Claude has sent nothing for {quiet:.0f} s; still waiting…", seconds=quiet))
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def _finish(hub: Hub, run: Run, *, status: str, usage: llm.Usage, stop_reason: str, error_code: str, error: str) -> None:
    await hub.flush(run)
    spec = run.spec
    # The text is read here, on the loop: Run is not thread-safe (text() compacts in place).
    content = run.text()
    # Store and render at the same time: the rendering runs in a helper process (renderpool).
    stored, rendered = await asyncio.gather(
        _store(hub, run, Ending(spec=spec, content=content, status=status, usage=usage, stop_reason=stop_reason, error_code=error_code, error=error)),
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
        await fanout.tell_user(get_channel_layer(), hub.sockets, spec.owner_id, {"type": "chat.generation_end", "end": end}, redis_ok=hub.redis_ok)
    except Exception:
        log.exception("Could not announce the end of generation %s", run.gid)
    if not isinstance(stored, BaseException):
        hub.queue_followups(services.reply_followups(spec=spec, status=status, usage=usage))


async def _store(hub: Hub, run: Run, ending: "Ending") -> dict | BaseException:
    """Store the reply's end; while the database is unreachable, keep it and try again with
    backoff (for CHATSITE_FINAL_WRITE_RETRY_SECONDS), telling the followers it is not saved
    yet. The run stays in the hub meanwhile: its checkpoints go on (the first to get through
    stores the whole text), and its runner says it is alive in Redis (liveness), so the reaper
    leaves it alone."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.CHATSITE_FINAL_WRITE_RETRY_SECONDS
    delay, told, tries = 0.25, False, 0
    while True:
        tries += 1
        try:
            stored = await hub.endings.submit(ending)
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            if not errors.is_database_outage(exc) or loop.time() + delay > deadline:
                return exc
            if not told:
                told = True
                log.warning("Generation %s: the database is unreachable (%s); keeping the reply and retrying its write", run.gid, exc)
                await hub.notify(run, frames.notice(
                    run.gid, "saving",
                    "The reply is complete, but the server cannot reach its database to save it yet. It is kept and will be saved as soon as the database is back.",
                ))
            await asyncio.sleep(delay)
            delay = min(delay * 2, settings.CHATSITE_FINAL_WRITE_BACKOFF_MAX_SECONDS)
            continue
        if told:
            log.warning("Generation %s: stored after %d tries", run.gid, tries)
        return stored


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
