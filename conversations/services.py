"""Writes: conversations, messages and the persistence side of generations.

Plain synchronous functions (the async runner calls them through a thread), each a few
bounded queries. The generation runner writes a reply three ways only: created here at
start, checkpointed on a timer, finished once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from . import budgets, compaction, modelcache, prompting, prompts, queueing, selectors
from .cleantext import storable
from .errors import ChatError
from .llm import Usage
from .models import Conversation, LLMModel, Message, Summary, SystemPrompt, UsageRecord
from .prepared import Prepared, update_rows
from .pricing import Prices, cost_of


@dataclass(frozen=True)
class GenerationSpec:
    """Everything a runner needs to produce one reply, with no ORM objects inside."""

    generation_id: uuid.UUID
    message_id: int
    conversation_id: int
    owner_id: int
    model: str
    system: list[dict[str, Any]] = field(hash=False)
    messages: list[dict[str, Any]] = field(hash=False)
    max_tokens: int
    initial_text: str = ""
    # For the final frame, so finishing needs no extra reads.
    parent_id: int | None = None
    created_at: str = ""
    conversation_title: str = ""
    # Prices at the time of the send: the reply's cost is computed from these.
    prices: Prices | None = None
    # Shown under the reply when Claude did not see the whole thread.
    context_note: str = ""
    # The summary the request used (None: the whole thread) and when to compact next.
    summary_id: int | None = None
    compact_at_tokens: int = 0
    # "" or "first_message" while the conversation has no real title yet.
    title_source: str = ""


def conversation_create(*, owner: AbstractBaseUser, model: str | None = None, preset_id: int | None = None) -> Conversation:
    if model:
        row = LLMModel.objects.filter(model_id=model, enabled=True).first()
    else:
        row = modelcache.default_model()
    if row is None:
        raise ChatError("bad_model", "That model is not offered on this server." if model else "No model is enabled on this server. Ask an administrator.")
    model = row.model_id
    preset: SystemPrompt | None
    if preset_id:
        # Inactive presets and those restricted to groups the person is not in look alike: absent.
        preset = selectors.system_prompts_active(user=owner).filter(pk=preset_id).first()
        if preset is None:
            raise ChatError("bad_preset", "That system prompt is not available.")
    else:
        preset = selectors.system_prompt_default(user=owner)
    version = prompts.system_prompt_version_current(prompt=preset) if preset else None
    return Conversation.objects.create(owner=owner, model=model, preset=preset, system_prompt=preset.text if preset else "", prompt_version=version)


def _title_from(content: str, limit: int = 60) -> str:
    line = " ".join(content.split())
    if len(line) <= limit:
        return line
    cut = line[:limit].rsplit(" ", 1)[0] or line[:limit]
    return cut + "…"


def _validate_content(content: object) -> str:
    if not isinstance(content, str) or not content.strip():
        raise ChatError("empty", "Type a message first.")
    if len(content) > settings.CHATSITE_MAX_INPUT_CHARS:
        raise ChatError(
            "too_long",
            f"That message is {len(content):,} characters; the limit is {settings.CHATSITE_MAX_INPUT_CHARS:,}. Shorten it or split it up.",
        )
    return storable(content)


def llm_history(thread: list[Message]) -> list[dict[str, Any]]:
    """The Messages API payload for a thread: empty turns dropped, same-role turns merged."""
    history: list[dict[str, Any]] = []
    for message in thread:
        text = message.content
        if not text.strip():
            continue
        if history and history[-1]["role"] == message.role:
            history[-1]["content"] += "\n\n" + text
        else:
            history.append({"role": message.role, "content": text})
    # The API wants the conversation to start with the person.
    while history and history[0]["role"] != Message.Role.USER:
        history.pop(0)
    return history


def conversation_rename(*, conversation: Conversation, title: object) -> Conversation:
    """A title the person chose; automatic titles never overwrite it."""
    if not isinstance(title, str) or not title.strip():
        raise ChatError("empty", "A title cannot be empty.")
    title = storable(" ".join(title.split())[:200])
    Conversation.objects.filter(pk=conversation.pk).update(title=title, title_source=Conversation.TitleSource.USER)
    conversation.title, conversation.title_source = title, Conversation.TitleSource.USER
    return conversation


def _model_for(conversation: Conversation) -> LLMModel:
    row = modelcache.llm_model(conversation.model)
    if row is None or not row.enabled:
        raise ChatError(
            "model_disabled",
            f"This conversation's model ({conversation.model}) has been turned off by an administrator. Start a new conversation to go on.",
        )
    return row


def _cache_policy(conversation: Conversation, model: LLMModel) -> prompting.CachePolicy:
    preset = modelcache.preset(conversation.preset_id)
    if preset is None:
        return prompting.CachePolicy(enabled=settings.CHATSITE_PROMPT_CACHING, ttl="5m", min_tokens=model.min_cache_tokens)
    return prompting.CachePolicy(enabled=settings.CHATSITE_PROMPT_CACHING and preset.cache_enabled, ttl=preset.cache_ttl, min_tokens=model.min_cache_tokens)


@dataclass(frozen=True)
class _Request:
    model: LLMModel
    prompt: prompting.Prompt
    summary: Summary | None
    max_tokens: int


def _prepare_request(*, conversation: Conversation, thread: list[Message], continue_from: str = "") -> _Request:
    """Summary + the turns after it + cache breakpoints, trimmed to the context window; for a
    Continue, the kept text and what the model needs to carry it on (prompting.build)."""
    model = _model_for(conversation)
    summary = compaction.active_summary(conversation=conversation, thread=thread)
    if summary is not None:
        cut = next(i for i, m in enumerate(thread) if m.pk == summary.upto_id)
        thread = thread[cut + 1 :]
    max_tokens = min(settings.CHATSITE_MAX_TOKENS, model.max_output_tokens)
    prompt = prompting.build(
        system_prompt=conversation.system_prompt,
        summary=summary.text if summary else "",
        history=llm_history(thread),
        policy=_cache_policy(conversation, model),
        max_prompt_tokens=model.context_window - max_tokens - settings.CHATSITE_CONTEXT_SAFETY_TOKENS,
        tokenizer_factor=model.tokenizer_factor,
        continue_from=continue_from,
        prefill=model.accepts_prefill,
    )
    return _Request(model=model, prompt=prompt, summary=summary, max_tokens=max_tokens)


def _reply_placeholder(*, conversation: Conversation, parent: Message, request: _Request, runner: str, now: datetime) -> Message:
    """The streaming reply (not saved yet) for a prepared request; queues compaction if due."""
    if request.prompt.trimmed_messages or compaction.should_compact(conversation=conversation, model=request.model, summary=request.summary):
        compaction.enqueue(conversation.pk)
    return Message(
        conversation=conversation,
        parent=parent,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        model=conversation.model,
        generation_id=Message.new_generation_id(),
        runner=runner,
        heartbeat_at=now,
        context_note=request.prompt.note,
    )


def _start_reply(*, conversation: Conversation, parent: Message, thread: list[Message], runner: str) -> tuple[Message, GenerationSpec]:
    request = _prepare_request(conversation=conversation, thread=thread)
    reply = _reply_placeholder(conversation=conversation, parent=parent, request=request, runner=runner, now=timezone.now())
    reply.save(force_insert=True)
    conversation.current_leaf = reply
    conversation.save(update_fields=["current_leaf", "title", "title_source", "updated_at"])
    return reply, _spec(conversation=conversation, reply=reply, request=request)


def _spec(*, conversation: Conversation, reply: Message, request: _Request, initial_text: str = "") -> GenerationSpec:
    return GenerationSpec(
        generation_id=reply.generation_id,
        message_id=reply.pk,
        conversation_id=conversation.pk,
        owner_id=conversation.owner_id,
        model=request.model.model_id,
        system=request.prompt.system,
        messages=request.prompt.messages,
        max_tokens=request.max_tokens,
        initial_text=initial_text,
        parent_id=reply.parent_id,
        created_at=reply.created_at.isoformat(),
        conversation_title=conversation.title,
        prices=Prices.of(request.model),
        context_note=request.prompt.note,
        summary_id=request.summary.pk if request.summary else None,
        compact_at_tokens=compaction.thresholds(request.model)[0],
        title_source=conversation.title_source,
    )


_SENTINEL_ID = -7_777_777_777

# has_summary rides along, so a conversation never summarised costs no summary query.
_locked_conversation = Prepared(
    lambda pk: Conversation.objects.select_for_update(of=("self",))
    .filter(pk=pk, deleted_at__isnull=True)
    .annotate(has_summary=Exists(Summary.objects.filter(conversation=OuterRef("pk"))))[:1],
    pk=_SENTINEL_ID,
)
_conversation_messages = Prepared(lambda conversation_id: Message.objects.filter(conversation_id=conversation_id), conversation_id=_SENTINEL_ID)


def _locked_conversations(ids: list[int]) -> list[Conversation]:
    """conversation_lock for several conversations, locked in id order."""
    if len(ids) == 1:
        rows = list(_locked_conversation(pk=ids[0]))
    else:
        rows = list(
            Conversation.objects.select_for_update(of=("self",))
            .filter(pk__in=ids, deleted_at__isnull=True)
            .annotate(has_summary=Exists(Summary.objects.filter(conversation=OuterRef("pk"))))
            .order_by("pk")
        )
    for row in rows:
        row.has_summary = bool(row.has_summary)  # raw rows skip converters: SQLite says 0/1
    return rows


def conversation_messages_many(conversation_ids: list[int]) -> list[Message]:
    if len(conversation_ids) == 1:
        return conversation_messages(conversation_ids[0])
    return list(Message.objects.filter(conversation_id__in=conversation_ids))


def conversation_lock(conversation: Conversation) -> Conversation:
    """The conversation row, locked for this transaction (PostgreSQL; SQLite's IMMEDIATE
    transactions serialise writers anyway). A conversation deleted meanwhile (e.g. from another
    tab, while this socket was open) takes no new messages."""
    locked = _locked_conversations([conversation.pk])
    if not locked:
        raise ChatError("not_found", "This conversation was deleted.")
    return locked[0]


def conversation_messages(conversation_id: int) -> list[Message]:
    """Every message of the conversation, every branch, oldest first (the send's read)."""
    return list(_conversation_messages(conversation_id=conversation_id))


BUSY_MESSAGE = "Claude is still answering in this conversation. Wait for the reply to finish or press Stop."


def _refuse_if_generating(conversation: Conversation) -> None:
    if Message.objects.filter(conversation=conversation, status=Message.Status.STREAMING).exists():
        raise ChatError("busy", BUSY_MESSAGE)


def message_send(*, conversation: Conversation, content: object, runner: str = "") -> tuple[Message, Message, GenerationSpec]:
    """Store the person's message and a streaming reply placeholder; return the runner's spec.

    `runner` is the hub channel of the process that will run the reply (for follow/stop).

    Refuses (ChatError "busy") while another reply in the conversation is streaming: one
    answer at a time keeps the thread linear and the cost predictable.
    """
    result = message_send_many([SendRequest(conversation=conversation, content=content, runner=runner)])[0]
    if isinstance(result, ChatError):
        raise result
    return result


@dataclass(frozen=True)
class SendRequest:
    conversation: Conversation
    content: object
    runner: str = ""


SendResult = tuple[Message, Message, GenerationSpec]


@transaction.atomic
def message_send_many(requests: list[SendRequest]) -> list[SendResult | ChatError]:
    """message_send for a burst of sends at once, in one transaction ("group commit").

    Each send stays independent: a refused one (empty, too long, over budget, busy, deleted)
    gets its ChatError in its place and the others go on. The statements are per batch, not
    per send: lock every conversation (in id order, so concurrent batches cannot deadlock),
    read their messages, insert the people's messages, insert the replies, point each
    conversation at its new reply. Under a burst of sends that is what keeps the time to first
    token short: each statement is a round trip that must win the GIL back from the busy event
    loop.
    """
    results: list[SendResult | ChatError | None] = [None] * len(requests)
    accepted: list[tuple[int, str]] = []
    for i, request in enumerate(requests):
        try:
            content = _validate_content(request.content)
            budgets.ensure_within_budget(request.conversation.owner_id)
        except ChatError as exc:
            results[i] = exc
            continue
        accepted.append((i, content))
    if accepted:
        ids = sorted({requests[i].conversation.pk for i, _ in accepted})
        locked = {c.pk: c for c in _locked_conversations(ids)}
        messages: dict[int, list[Message]] = {pk: [] for pk in locked}
        for message in conversation_messages_many(list(locked)):
            messages[message.conversation_id].append(message)
        started: list[tuple[int, Conversation, Message, _Request]] = []
        answering: set[int] = set()
        for i, content in accepted:
            conversation = locked.get(requests[i].conversation.pk)
            if conversation is None:
                results[i] = ChatError("not_found", "This conversation was deleted.")
                continue
            if conversation.pk in answering or any(m.status == Message.Status.STREAMING for m in messages[conversation.pk]):
                results[i] = ChatError("busy", BUSY_MESSAGE)
                continue
            thread = selectors.conversation_thread(conversation=conversation, messages=messages[conversation.pk])
            user_message = Message(
                conversation=conversation, parent=thread[-1] if thread else None, role=Message.Role.USER,
                content=content, status=Message.Status.COMPLETE,
            )
            try:  # before anything is stored: a refusal (e.g. the model was turned off) stores nothing
                request = _prepare_request(conversation=conversation, thread=[*thread, user_message])
            except ChatError as exc:
                results[i] = exc
                continue
            answering.add(conversation.pk)  # a second send to it in this batch is refused too
            if not conversation.title:
                # A placeholder until the title task names it (never over a title the person set).
                conversation.title = _title_from(content)
                conversation.title_source = Conversation.TitleSource.FIRST_MESSAGE
            started.append((i, conversation, user_message, request))
        Message.objects.bulk_create([user_message for _, _, user_message, _ in started])
        replies = []
        now = timezone.now()
        for i, conversation, user_message, request in started:
            reply = _reply_placeholder(conversation=conversation, parent=user_message, request=request, runner=requests[i].runner, now=now)
            replies.append((i, conversation, user_message, reply, request))
        Message.objects.bulk_create([reply for _, _, _, reply, _ in replies])
        for i, conversation, user_message, reply, request in replies:
            conversation.current_leaf = reply
            conversation.updated_at = now
            results[i] = (user_message, reply, _spec(conversation=conversation, reply=reply, request=request))
        update_rows(Conversation, {
            c.pk: {"current_leaf": c.current_leaf_id, "title": c.title, "title_source": c.title_source, "updated_at": now}
            for _, c, _, _, _ in replies
        })
    return results  # type: ignore[return-value]  # every slot is filled


@transaction.atomic
def reply_regenerate(*, conversation: Conversation, message_id: int, runner: str = "") -> tuple[Message, GenerationSpec]:
    """A fresh reply (new generation id) to the person's message above `message_id`."""
    budgets.ensure_within_budget(conversation.owner_id)
    conversation = conversation_lock(conversation)
    _refuse_if_generating(conversation)
    old = Message.objects.filter(conversation=conversation, pk=message_id, role=Message.Role.ASSISTANT).first()
    if old is None or old.parent is None:
        raise ChatError("not_found", "That reply no longer exists.")
    thread = selectors.conversation_thread(conversation=conversation)
    if old not in thread:
        raise ChatError("not_found", "That reply is not on the visible thread.")
    upto = thread[: thread.index(old)]
    reply, spec = _start_reply(conversation=conversation, parent=old.parent, thread=upto, runner=runner)
    selectors.message_with_branch(reply)  # the old reply stays stored: the new one is version n of n
    return reply, spec


@transaction.atomic
def reply_continue(*, conversation: Conversation, message_id: int, runner: str = "") -> tuple[Message, GenerationSpec]:
    """Resume a stopped, failed or interrupted reply after its kept text, as a new generation."""
    budgets.ensure_within_budget(conversation.owner_id)
    conversation = conversation_lock(conversation)
    _refuse_if_generating(conversation)
    reply = Message.objects.filter(
        conversation=conversation, pk=message_id, role=Message.Role.ASSISTANT,
        status__in=[Message.Status.STOPPED, Message.Status.ERROR, Message.Status.INTERRUPTED],
    ).first()
    if reply is None and Message.objects.filter(conversation=conversation, pk=message_id, error_code="max_tokens").exists():
        reply = Message.objects.get(pk=message_id)
    if reply is None:
        raise ChatError("not_found", "Only a stopped, cut-off or failed reply can be continued.")
    if not reply.content.strip():
        raise ChatError("nothing_to_continue", "This reply has no text to continue from. Use Retry instead.")
    thread = selectors.conversation_thread(conversation=conversation)
    if not thread or thread[-1] != reply:
        raise ChatError("not_found", "Only the last reply of the conversation can be continued.")
    request = _prepare_request(conversation=conversation, thread=thread[:-1], continue_from=reply.content)
    reply.generation_id = Message.new_generation_id()
    reply.status = Message.Status.STREAMING
    reply.error = reply.error_code = ""
    reply.runner = runner
    reply.heartbeat_at = timezone.now()
    reply.finished_at = None
    reply.context_note = request.prompt.note
    reply.save()
    reply.conversation = conversation  # callers read the title without another query
    conversation.current_leaf = reply
    conversation.save(update_fields=["current_leaf", "updated_at"])
    return reply, _spec(conversation=conversation, reply=reply, request=request, initial_text=reply.content)


# --- Generation persistence (called by the runner) ------------------------------------------


def generation_checkpoint(*, items: list[tuple[int, uuid.UUID, str | None]], runner: str) -> int:
    """Save partial text and a heartbeat for live generations: one statement for the replies
    whose text changed (per 500), one for the rest, however many replies are live. Returns
    the number of statements.

    `items` are (message_id, generation_id, content-or-None-if-unchanged). Guarded by the
    generation id and status so a late checkpoint never overwrites a finished reply.
    """
    now = timezone.now()
    # storable(): a NUL or lone surrogate from Claude must not cost the reply (cleantext).
    changed = {message_id: {"content": storable(content)} for message_id, _, content in items if content is not None}
    generations = {message_id: generation_id for message_id, generation_id, content in items if content is not None}
    unchanged = [message_id for message_id, _, content in items if content is None]
    chunk = 500
    with transaction.atomic():
        update_rows(Message, changed, match={"generation_id": generations}, status_in=("status", [Message.Status.STREAMING]),
                    same={"heartbeat_at": now, "runner": runner}, chunk=chunk)
        if unchanged:
            Message.objects.filter(pk__in=unchanged, status=Message.Status.STREAMING).update(heartbeat_at=now, runner=runner)
    return -(-len(changed) // chunk) + (1 if unchanged else 0)


def generation_finish(
    *,
    message_id: int,
    conversation_id: int | None = None,
    generation_id: uuid.UUID,
    content: str,
    status: str,
    usage: Usage,
    stop_reason: str = "",
    error_code: str = "",
    error: str = "",
    owner_id: int | None = None,
    prices: Prices | None = None,
    summary_id: int | None = None,
    accumulate: bool = True,
) -> bool:
    """Write the final state once. Returns False if the reply was already finished elsewhere.

    A reply the reaper marked interrupted (heartbeat looked stale) is still finished by its
    runner: the runner has the freshest text. With `accumulate`, usage and cost are added, so a
    continued reply counts every generation that wrote it (a new reply, whose counters are
    still zero, can skip that: plain values compile to cheaper SQL); each generation is also
    its own ledger entry.
    """
    if conversation_id is None:
        conversation_id = Message.objects.filter(pk=message_id).values_list("conversation_id", flat=True).first()
    finish = Finish(
        message_id=message_id, conversation_id=conversation_id, generation_id=generation_id, content=content,
        status=status, usage=usage, stop_reason=stop_reason, error_code=error_code, error=error,
        owner_id=owner_id, prices=prices, summary_id=summary_id,
    )
    now = timezone.now()
    values = _final_values(finish, now)
    if accumulate:  # a continued reply: add to what its earlier generations used
        values.update({name: F(name) + values[name] for name in _USAGE_COLUMNS})
    # One transaction, like generation_finish_many. Statement by statement, a retry (the
    # runner retries a failed final write) found the reply already written and billed nothing,
    # and a conversation deleted between the statements failed the ledger's INSERT.
    with transaction.atomic():
        _lock_finishing([conversation_id])
        updated = Message.objects.filter(
            pk=message_id, generation_id=generation_id, status__in=[Message.Status.STREAMING, Message.Status.INTERRUPTED]
        ).update(**values)
        _after_finish([finish], updated={message_id} if updated else set(), now=now)
    return bool(updated)


def _lock_finishing(conversation_ids: list[int | None]) -> None:
    """Lock the conversations of replies being finished, in id order, before their messages.

    Every writer takes a conversation's row before its messages' rows (sends, regenerate,
    edit, the API's delete, the purge). A finish that updated the messages first and the
    conversations second deadlocked with a delete for good: Django's delete collector sets
    current_leaf to NULL (the conversation row), then deletes the messages and waits for the
    reply's row, which the finish holds while it waits for the conversation row. PostgreSQL
    aborted one of the two after deadlock_timeout (1 s): the delete (HTTP 500) or the finish.
    NO KEY UPDATE is the lock the finish's UPDATE of the conversation takes anyway, taken
    first; one statement per batch. A conversation deleted meanwhile is simply not found.
    """
    ids = sorted({pk for pk in conversation_ids if pk is not None})
    if len(ids) == 1:  # a lone reply ending, the usual case: 0.13 ms compiled once, 0.33 ms through the ORM
        list(_finishing_conversation(pk=ids[0]))
    elif ids:
        list(Conversation.objects.select_for_update(no_key=True).filter(pk__in=ids).order_by("pk").values_list("pk", flat=True))


_finishing_conversation = Prepared(lambda pk: Conversation.objects.select_for_update(no_key=True).filter(pk=pk).only("pk"), pk=_SENTINEL_ID)


_USAGE_COLUMNS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "cache_creation_1h_input_tokens", "cost")


def _final_values(f: "Finish", now: datetime) -> dict[str, Any]:
    """A finished reply's columns, as generation_finish and generation_finish_many write them."""
    cost = cost_of(f.usage, f.prices) if f.prices is not None else None
    return {
        "content": storable(f.content), "status": f.status,  # (cleantext: as the end frame shows it)
        "input_tokens": f.usage.input_tokens, "output_tokens": f.usage.output_tokens,
        "cache_creation_input_tokens": f.usage.cache_creation_input_tokens,
        "cache_read_input_tokens": f.usage.cache_read_input_tokens,
        "cache_creation_1h_input_tokens": f.usage.cache_creation_1h_input_tokens,
        "cost": cost.total if cost is not None else 0,
        "stop_reason": storable(f.stop_reason or ""), "error_code": f.error_code, "error": storable(f.error),
        "heartbeat_at": None, "finished_at": now, "updated_at": now,
    }


def _after_finish(finishes: list["Finish"], *, updated: set[int], now: datetime) -> None:
    """What follows the messages' final UPDATE: the conversations, and the ledger."""
    # What the next request starts from, known exactly; compaction decides on it.
    measured = {f.conversation_id: {"updated_at": now, "context_tokens": f.usage.prompt_tokens + f.usage.output_tokens, "context_summary": f.summary_id}
                for f in finishes if f.message_id in updated and f.usage.prompt_tokens}
    touched = {f.conversation_id: {"updated_at": now} for f in finishes if f.message_id in updated and not f.usage.prompt_tokens}
    update_rows(Conversation, measured)
    update_rows(Conversation, touched)
    billed = [f for f in finishes if f.owner_id is not None and f.prices is not None and (f.usage.prompt_tokens or f.usage.output_tokens)]
    unwritten = [f.message_id for f in billed if f.message_id not in updated]
    existing = set(Message.objects.filter(pk__in=unwritten).values_list("pk", flat=True)) if unwritten else set()
    ledger = []
    for f in billed:
        if f.message_id in updated:
            ledger.append(_usage_row(user_id=f.owner_id, conversation_id=f.conversation_id, message_id=f.message_id, kind=UsageRecord.Kind.REPLY, usage=f.usage, prices=f.prices))
        elif f.message_id not in existing:
            # Deleted with its conversation while Claude was answering: the tokens were still
            # billed, so they still count against the person's budget.
            ledger.append(_usage_row(user_id=f.owner_id, conversation_id=None, message_id=None, kind=UsageRecord.Kind.REPLY, usage=f.usage, prices=f.prices))
    UsageRecord.objects.bulk_create(ledger)


@dataclass(frozen=True)
class Finish:
    """generation_finish's arguments, for a batch (a new reply's: its counters start at zero)."""

    message_id: int
    conversation_id: int | None
    generation_id: uuid.UUID
    content: str
    status: str
    usage: Usage
    stop_reason: str = ""
    error_code: str = ""
    error: str = ""
    owner_id: int | None = None
    prices: Prices | None = None
    summary_id: int | None = None


@transaction.atomic
def generation_finish_many(finishes: list[Finish]) -> list[bool]:
    """generation_finish for many new replies at once (see runner: the ends of a burst of
    replies): one UPDATE of the messages, at most two of the conversations, one INSERT into the
    ledger. Returns, per finish, whether it wrote the reply (False: already finished)."""
    if not finishes:
        return []
    now = timezone.now()
    _lock_finishing([f.conversation_id for f in finishes])
    updated = set(update_rows(
        Message, {f.message_id: _final_values(f, now) for f in finishes},
        match={"generation_id": {f.message_id: f.generation_id for f in finishes}},
        status_in=("status", [Message.Status.STREAMING, Message.Status.INTERRUPTED]),
    ))
    _after_finish(finishes, updated=updated, now=now)
    return [f.message_id in updated for f in finishes]


def reply_followups(*, spec: GenerationSpec, status: str, usage: Usage) -> list[tuple[str, int]]:
    """The background work a finished reply calls for (queueing.publish): a title, a
    compaction step."""
    tasks = []
    if status == Message.Status.COMPLETE and spec.title_source in ("", Conversation.TitleSource.FIRST_MESSAGE):
        tasks.append((queueing.TITLE, spec.conversation_id))
    if spec.compact_at_tokens and usage.prompt_tokens + usage.output_tokens >= spec.compact_at_tokens:
        tasks.append((queueing.COMPACTION, spec.conversation_id))
    return tasks


def usage_record(*, user_id: int, conversation_id: int | None, message_id: int | None, kind: str, usage: Usage, prices: Prices,
                 estimated: bool = False) -> UsageRecord:
    """Put one billed call in the ledger (replies, summaries and titles alike)."""
    row = _usage_row(user_id=user_id, conversation_id=conversation_id, message_id=message_id, kind=kind, usage=usage, prices=prices)
    row.estimated = estimated
    row.save(force_insert=True)
    return row


def usage_record_settle(*, record: UsageRecord, usage: Usage, prices: Prices) -> None:
    """An estimated ledger entry (see metering) gets the call's real usage."""
    real = _usage_row(user_id=record.user_id, conversation_id=record.conversation_id, message_id=record.message_id, kind=record.kind, usage=usage, prices=prices)
    UsageRecord.objects.filter(pk=record.pk).update(
        **{name: getattr(real, name) for name in _LEDGER_USAGE_FIELDS}, estimated=False,
    )


def usage_record_drop(*, record: UsageRecord) -> None:
    """An estimated ledger entry for a call the API refused (nothing billed)."""
    UsageRecord.objects.filter(pk=record.pk, estimated=True).delete()


_LEDGER_USAGE_FIELDS = ("model", "input_tokens", "output_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens", "cache_read_tokens", "cost", "uncached_cost")


def _usage_row(*, user_id: int, conversation_id: int | None, message_id: int | None, kind: str, usage: Usage, prices: Prices) -> UsageRecord:
    cost = cost_of(usage, prices)
    one_hour = min(usage.cache_creation_1h_input_tokens, usage.cache_creation_input_tokens)
    return UsageRecord(
        user_id=user_id, conversation_id=conversation_id, message_id=message_id, kind=kind, model=prices.model_id,
        input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
        cache_write_5m_tokens=usage.cache_creation_input_tokens - one_hour, cache_write_1h_tokens=one_hour,
        cache_read_tokens=usage.cache_read_input_tokens, cost=cost.total, uncached_cost=cost.uncached,
    )


def generations_stale_runners(*, stale_after: float | None = None, now: datetime | None = None) -> set[str]:
    """The runners of the replies generations_mark_interrupted would mark now."""
    return set(_stale_generations(stale_after=stale_after, now=now).values_list("runner", flat=True).distinct())


def _stale_generations(*, stale_after: float | None, now: datetime | None, alive_runners: frozenset[str] = frozenset()):
    now = now or timezone.now()
    stale_after = settings.CHATSITE_HEARTBEAT_STALE_SECONDS if stale_after is None else stale_after
    cutoff = now - timedelta(seconds=stale_after)
    stale = Message.objects.filter(status=Message.Status.STREAMING).filter(Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True))
    if alive_runners:
        # A live runner that could not write heartbeats (the database was down) may still be
        # retrying the reply's end; it is spared for as long as it may retry, no longer.
        spared_since = cutoff - timedelta(seconds=settings.CHATSITE_FINAL_WRITE_RETRY_SECONDS)
        stale = stale.exclude(runner__in=alive_runners, heartbeat_at__gte=spared_since)
    return stale


def generations_mark_interrupted(*, stale_after: float | None = None, now: datetime | None = None, alive_runners: frozenset[str] = frozenset()) -> int:
    """Mark replies whose runner stopped proving it is alive as interrupted, keeping their text.

    Run at start-up and periodically (Celery beat): with several processes, only a stale
    heartbeat tells that the process running a generation died; `alive_runners` (said alive
    in Redis, see liveness) are spared.
    """
    now = now or timezone.now()
    return _stale_generations(stale_after=stale_after, now=now, alive_runners=alive_runners).update(
        status=Message.Status.INTERRUPTED,
        error_code="interrupted",
        error="The server stopped while this reply was being written. The text so far is kept; you can retry.",
        heartbeat_at=None,
        finished_at=now,
        updated_at=now,
    )
