"""The API's operations: thin async adapters over services, selectors and the hub.

ORM work goes through `asyncdb.request_db` (as in the websocket consumer); replies start and
are followed exactly as the consumer does it (`services.message_send`, then `runner.start`).
"""

from __future__ import annotations

import logging

from channels.layers import get_channel_layer
from django.http import HttpRequest, HttpResponse
from ninja import Path, Query, Router, Status

from .. import frames, groups, runner, selectors, services, usage, workspace
from ..asyncdb import request_db
from ..errors import ChatError
from ..hub import get_hub
from ..models import Conversation, Message
from . import selectors as api_selectors
from . import streaming
from .auth import caller_of, request_throttle, send_throttle
from .errors import ApiError, reply_error_status
from .schemas import (
    MAX_ID, BudgetOut, ConversationCreateIn, ConversationDetailOut, ConversationOut, ConversationPage, ConversationRenameIn,
    DaySpendOut, ErrorOut, MessageIn, MessageOut, ModelOut, ModelSpendOut, PromptOut, SendOut, SpendOut, SSECreated, SSEDelta,
    SSEDone, SSEError, StopOut, UsageReportOut, sse_event_schema,
)

log = logging.getLogger(__name__)
router = Router()

ConversationId = Path(..., ge=1, le=MAX_ID, description="A conversation of yours.")
MessageId = Path(..., ge=1, le=MAX_ID, description="An assistant message (reply) of that conversation.")


def _errors(*codes: int) -> dict[int, type[ErrorOut]]:
    # Every operation can answer 401 (no or bad credentials) and 429 (rate limit); ids and
    # bodies can be invalid (400); unsafe methods from a browser session need CSRF (403).
    return {code: ErrorOut for code in sorted({400, 401, 429, 500, *codes})}


_SSE_TEXT = (
    "Server-Sent Events: {first}`delta` events (offsets count Unicode code points; the SSE `id` is the offset "
    "after the event), then exactly one `done` or `error`. Comment lines keep idle connections open."
)
_FINAL_EVENTS = (("delta", SSEDelta), ("done", SSEDone), ("error", SSEError))
_SSE_SEND_DOC = {
    "description": _SSE_TEXT.format(first="`created` (the stored message and the reply's id), then "),
    "content": {"text/event-stream": {"schema": sse_event_schema(("created", SSECreated), *_FINAL_EVENTS)}},
}
_SSE_FOLLOW_DOC = {
    "description": _SSE_TEXT.format(first=""),
    "content": {"text/event-stream": {"schema": sse_event_schema(*_FINAL_EVENTS)}},
}


# --- conversations ---------------------------------------------------------------------------


@router.get("/conversations", response={200: ConversationPage, **_errors()}, tags=["conversations"], summary="List your conversations")
async def conversations_list(
    request: HttpRequest,
    limit: int = Query(20, ge=1, le=100),
    offset: int = Query(0, ge=0, le=1_000_000),
) -> ConversationPage:
    """Newest activity first, `limit` per page."""
    page, count = await request_db(api_selectors.conversation_page_for_user)(user=caller_of(request).user, limit=limit, offset=offset)
    next_offset = offset + limit if offset + limit < count else None
    return ConversationPage(items=[ConversationOut.of(c) for c in page], count=count, limit=limit, offset=offset, next_offset=next_offset)


def _conversation_create(*, user, model: str | None, prompt_id: int | None, title: str | None) -> Conversation:
    conversation = services.conversation_create(owner=user, model=model or None, preset_id=prompt_id)
    if title is not None and title.strip():
        services.conversation_rename(conversation=conversation, title=title)
    return conversation


@router.post("/conversations", response={201: ConversationOut, **_errors(403)}, tags=["conversations"], summary="Start a conversation")
async def conversation_create(request: HttpRequest, body: ConversationCreateIn) -> Status:
    conversation = await request_db(_conversation_create)(user=caller_of(request).user, model=body.model, prompt_id=body.prompt_id, title=body.title)
    return Status(201, ConversationOut.of(conversation, is_generating=False))


@router.get("/conversations/{conversation_id}", response={200: ConversationDetailOut, **_errors(404)}, tags=["conversations"],
            summary="A conversation and its visible thread")
async def conversation_get(request: HttpRequest, conversation_id: int = ConversationId) -> ConversationDetailOut:
    conversation, thread = await request_db(api_selectors.conversation_detail_for_user)(user=caller_of(request).user, conversation_id=conversation_id)
    base = ConversationOut.of(conversation, is_generating=any(m.status == Message.Status.STREAMING for m in thread))
    return ConversationDetailOut(**base.model_dump(), system_prompt=conversation.system_prompt, messages=[MessageOut.of(m) for m in thread])


def _conversation_rename(*, user, conversation_id: int, title: str) -> Conversation:
    conversation = selectors.conversation_get_for_user(user=user, conversation_id=conversation_id)
    conversation = services.conversation_rename(conversation=conversation, title=title)
    conversation.is_generating = selectors.message_streaming_in_conversation(conversation_id=conversation.pk) is not None
    return conversation


@router.patch("/conversations/{conversation_id}", response={200: ConversationOut, **_errors(403, 404)}, tags=["conversations"],
              summary="Rename a conversation")
async def conversation_rename(request: HttpRequest, body: ConversationRenameIn, conversation_id: int = ConversationId) -> ConversationOut:
    conversation = await request_db(_conversation_rename)(user=caller_of(request).user, conversation_id=conversation_id, title=body.title)
    return ConversationOut.of(conversation)


@router.delete("/conversations/{conversation_id}", response={204: None, **_errors(403, 404)}, tags=["conversations"],
               summary="Delete a conversation")
async def conversation_delete(request: HttpRequest, conversation_id: int = ConversationId) -> Status:
    """A reply still being written is stopped first (it would go on costing tokens)."""
    user = caller_of(request).user
    conversation = await request_db(selectors.conversation_get_for_user)(user=user, conversation_id=conversation_id)
    running = await request_db(api_selectors.streaming_reply_in)(conversation_id=conversation.pk)
    if running is not None:
        await _stop(running)
    await request_db(workspace.conversation_destroy)(conversation=conversation)
    return Status(204, None)


# --- messages and replies --------------------------------------------------------------------


def _send(*, user, conversation_id: int, content: str, runner: str) -> tuple[Message, Message, services.GenerationSpec]:
    conversation = selectors.conversation_get_for_user(user=user, conversation_id=conversation_id)
    return services.message_send(conversation=conversation, content=content, runner=runner)


async def _start_reply(request: HttpRequest, conversation_id: int, content: str) -> tuple[Message, Message, services.GenerationSpec]:
    """Store the message and start Claude, as the websocket's `send` does; tell the person's open tabs."""
    user = caller_of(request).user
    hub = get_hub()
    await hub.ensure_listening()
    user_message, reply, spec = await request_db(_send)(user=user, conversation_id=conversation_id, content=content, runner=hub.channel_name)
    runner.start(hub, spec)
    payload = {
        "type": "message.created", "client_id": "", "conversation_id": reply.conversation_id,
        "conversation_title": reply.conversation.title,
        "user_message": frames.message_dict(user_message), "reply": frames.message_dict(reply),
    }
    try:
        await get_channel_layer().group_send(groups.user_group(user.pk), {"type": "chat.message_created", "payload": payload, "origin": ""})
    except Exception:  # open tabs catch up on their next follow; never fail the send for it
        log.exception("Could not announce an API send to the person's sockets")
    return user_message, reply, spec


_SEND_ERRORS = (402, 403, 404, 409, 413)


@router.post("/conversations/{conversation_id}/messages", response={201: SendOut, **_errors(*_SEND_ERRORS, 502, 503)},
             throttle=[request_throttle, send_throttle], tags=["messages"], summary="Send a message and wait for the whole reply")
async def message_send(request: HttpRequest, body: MessageIn, conversation_id: int = ConversationId) -> Status:
    """Answers when the reply has finished. If Claude fails, 502 or 503 (retryable: overloaded, rate
    limited) with the stored reply's id in `error.message_id`. A client that disconnects does not
    stop the reply."""
    user_message, reply, spec = await _start_reply(request, conversation_id, body.content)
    end = await streaming.wait_for_end(message_id=reply.pk, generation_id=str(spec.generation_id))
    reply = await request_db(api_selectors.reply_by_id)(message_id=reply.pk) or reply
    if end.name == "error":
        code = end.data["code"]
        status = reply_error_status(code)
        headers = {"Retry-After": "5"} if status == 503 else None
        raise ApiError(status, code, end.data["message"], headers=headers, message_id=reply.pk)
    return Status(201, SendOut(user_message=MessageOut.of(user_message), reply=MessageOut.of(reply)))


@router.post("/conversations/{conversation_id}/messages/stream", response={**_errors(*_SEND_ERRORS)}, openapi_extra={"responses": {"200": _SSE_SEND_DOC}},
             throttle=[request_throttle, send_throttle], tags=["messages"], summary="Send a message and stream the reply (SSE)")
async def message_send_stream(request: HttpRequest, body: MessageIn, conversation_id: int = ConversationId) -> HttpResponse:
    """Refusals (busy, too long, over budget…) are plain JSON errors before the stream starts; once it
    has started, a failed reply ends with an `error` event. Disconnecting does not stop the reply:
    re-attach with `GET …/replies/{message_id}/stream?offset=N`."""
    user_message, reply, spec = await _start_reply(request, conversation_id, body.content)
    created = streaming.Event("created", {"user_message": MessageOut.of(user_message).model_dump(mode="json"), "reply": MessageOut.of(reply).model_dump(mode="json")})
    events = streaming.reply_events(message_id=reply.pk, generation_id=str(spec.generation_id), offset=0)
    return streaming.sse_response(events, first=(created,))


@router.get("/conversations/{conversation_id}/replies/{message_id}", response={200: MessageOut, **_errors(404)}, tags=["messages"],
            summary="A reply, finished or still being written")
async def reply_get(request: HttpRequest, conversation_id: int = ConversationId, message_id: int = MessageId) -> MessageOut:
    message = await request_db(api_selectors.reply_get_for_user)(user=caller_of(request).user, conversation_id=conversation_id, message_id=message_id)
    run = get_hub().get(str(message.generation_id)) if message.status == Message.Status.STREAMING else None
    # Written here: fresher than the stored checkpoint.
    return MessageOut.of(message, live_text=run.text() if run is not None and not run.done else None)


@router.get("/conversations/{conversation_id}/replies/{message_id}/stream", response={**_errors(404)}, openapi_extra={"responses": {"200": _SSE_FOLLOW_DOC}},
            tags=["messages"], summary="Re-attach to a reply (SSE)")
async def reply_stream(
    request: HttpRequest,
    conversation_id: int = ConversationId,
    message_id: int = MessageId,
    offset: int | None = Query(None, ge=0, le=10**9, description="Code points you already have (default: the `Last-Event-ID` header, else 0)."),
) -> HttpResponse:
    """The text from `offset`, live if the reply is still being written (on any server process),
    then its `done` or `error` event. A finished reply sends the rest at once."""
    message = await request_db(api_selectors.reply_get_for_user)(user=caller_of(request).user, conversation_id=conversation_id, message_id=message_id)
    if offset is None:
        last = request.headers.get("Last-Event-ID", "")
        offset = int(last) if last.isdigit() and len(last) <= 9 else 0
    return streaming.sse_response(streaming.reply_events(message_id=message.pk, generation_id=str(message.generation_id), offset=offset))


async def _stop(message: Message) -> None:
    """Stop a running reply wherever it runs (this process's hub, or its runner's through the channel layer)."""
    hub = get_hub()
    gid = str(message.generation_id)
    if hub.stop(gid):
        return
    if message.runner and message.runner != hub.channel_name:
        await get_channel_layer().send(message.runner, {"type": "hub.stop", "generation_id": gid})


@router.post("/conversations/{conversation_id}/replies/{message_id}/stop", response={202: StopOut, **_errors(403, 404, 409)},
             tags=["messages"], summary="Stop a reply being written")
async def reply_stop(request: HttpRequest, conversation_id: int = ConversationId, message_id: int = MessageId) -> Status:
    """The text so far is kept and the reply ends with status `stopped`; followers get their final event.
    409 `not_running` if it has already finished."""
    message = await request_db(api_selectors.reply_get_for_user)(user=caller_of(request).user, conversation_id=conversation_id, message_id=message_id)
    if message.status != Message.Status.STREAMING:
        raise ChatError("not_running", "That reply has already finished.")
    await _stop(message)
    return Status(202, StopOut(message_id=message.pk, status="stopping"))


# --- catalogue and usage ---------------------------------------------------------------------


def _models() -> list:
    return list(selectors.llm_models_enabled())


def _prompts(*, user) -> list:
    return list(selectors.system_prompts_active(user=user))


@router.get("/models", response={200: list[ModelOut], **_errors()}, tags=["catalogue"], summary="Models you can start a conversation with")
async def models_list(request: HttpRequest) -> list[ModelOut]:
    return [ModelOut.of(row) for row in await request_db(_models)()]


@router.get("/prompts", response={200: list[PromptOut], **_errors()}, tags=["catalogue"], summary="System prompts you can start a conversation with")
async def prompts_list(request: HttpRequest) -> list[PromptOut]:
    return [PromptOut.of(row) for row in await request_db(_prompts)(user=caller_of(request).user)]


def _spend(spend: usage.Spend) -> dict:
    return {
        "calls": spend.calls, "input_tokens": spend.input_tokens, "output_tokens": spend.output_tokens,
        "cache_write_tokens": spend.cache_write_tokens, "cache_read_tokens": spend.cache_read_tokens,
        "cost": str(spend.cost), "saved_by_cache": str(spend.saved),
    }


@router.get("/usage", response={200: UsageReportOut, **_errors()}, tags=["usage"], summary="Your spend this month and your budget")
async def usage_get(request: HttpRequest) -> UsageReportOut:
    report = await request_db(usage.usage_report_for_user)(user_id=caller_of(request).user.pk)
    budget = report.budget
    return UsageReportOut(
        period_start=report.period.start, period_end=report.period.end,
        total=SpendOut(**_spend(report.total)),
        by_model=[ModelSpendOut(kind=row.kind, model=row.model_id, model_name=row.model_name, **_spend(row)) for row in report.rows],
        days=[DaySpendOut(day=d.day.isoformat(), cost=str(d.cost), calls=d.calls) for d in report.days],
        budget=BudgetOut(
            limit=str(budget.limit) if budget.limit is not None else None, spent=str(budget.spent),
            remaining=str(report.budget_left) if report.budget_left is not None else None,
            exhausted=budget.exhausted, resets_at=budget.resets_at,
        ),
    )
