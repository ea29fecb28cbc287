"""What the API reads and writes (pydantic, via ninja): the OpenAPI schema is built from these."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from ninja import Field, Schema

from .. import frames
from ..cleantext import storable
from ..models import Conversation, LLMModel, Message, SystemPrompt

# Ids are database keys: bounded so a huge number is a 400, not a database overflow.
MAX_ID = 2**63 - 1
MessageStatus = Literal["streaming", "complete", "stopped", "error", "interrupted"]


class ErrorDetail(Schema):
    code: str = Field(description="Stable, for programs: e.g. `busy`, `too_long`, `over_budget`, `rate_limited`, `overloaded`.")
    message: str = Field(description="For people.")
    message_id: int | None = Field(None, description="The stored reply, when a reply failed upstream.")
    details: list[dict] | None = Field(None, description="Per-field problems of an invalid request.")


class ErrorOut(Schema):
    error: ErrorDetail


class UsageOut(Schema):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int


class MessageOut(Schema):
    id: int
    role: Literal["user", "assistant"]
    status: MessageStatus
    model: str
    content: str = Field(description="Raw text (Markdown for replies). For a streaming reply, the text so far.")
    parent_id: int | None
    generation_id: str | None = Field(description="The reply's current generation (assistant messages).")
    error_code: str
    error: str
    context_note: str = Field(description="Set when Claude did not see the whole thread (e.g. trimmed to fit).")
    usage: UsageOut | None = Field(description="Tokens billed for the reply (assistant messages).")
    cost: str | None = Field(description="USD as a decimal string (assistant messages).")
    created_at: datetime
    finished_at: datetime | None

    @staticmethod
    def of(message: Message, *, live_text: str | None = None) -> "MessageOut":
        assistant = message.role == Message.Role.ASSISTANT
        usage = frames.usage_dict(message) if assistant else None
        cost = usage.pop("cost") if usage else None
        return MessageOut(
            id=message.pk, role=message.role, status=message.status, model=message.model,
            content=message.content if live_text is None else storable(live_text),  # (as it will be stored: cleantext)
            parent_id=message.parent_id, generation_id=str(message.generation_id) if message.generation_id else None,
            error_code=message.error_code, error=message.error, context_note=message.context_note,
            usage=UsageOut(**usage) if usage else None, cost=cost, created_at=message.created_at, finished_at=message.finished_at,
        )


class ConversationOut(Schema):
    id: int
    title: str
    model: str
    prompt_id: int | None = Field(description="The system prompt preset it was started from.")
    is_generating: bool = Field(description="A reply is being written right now.")
    current_leaf_id: int | None = Field(description="The last message of the visible thread.")
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def of(conversation: Conversation, *, is_generating: bool | None = None) -> "ConversationOut":
        if is_generating is None:
            is_generating = bool(getattr(conversation, "is_generating", False))
        return ConversationOut(
            id=conversation.pk, title=conversation.title, model=conversation.model, prompt_id=conversation.preset_id,
            is_generating=is_generating, current_leaf_id=conversation.current_leaf_id,
            created_at=conversation.created_at, updated_at=conversation.updated_at,
        )


class ConversationDetailOut(ConversationOut):
    system_prompt: str
    messages: list[MessageOut] = Field(description="The visible thread, oldest first.")


class ConversationPage(Schema):
    items: list[ConversationOut]
    count: int = Field(description="All of the person's conversations.")
    limit: int
    offset: int
    next_offset: int | None = Field(description="Pass as `offset` for the next page; null on the last page.")


class ConversationCreateIn(Schema):
    model: str | None = Field(None, max_length=100, description="A model id from `GET /models`; the default model if omitted.")
    prompt_id: int | None = Field(None, ge=1, le=MAX_ID, description="A system prompt from `GET /prompts`; the default prompt if omitted.")
    title: str | None = Field(None, max_length=1000, description="Optional; otherwise named after the first message.")


class ConversationRenameIn(Schema):
    title: str = Field(max_length=1000)


class MessageIn(Schema):
    content: str = Field(description="The person's message. Over the server's limit (CHATSITE_MAX_INPUT_CHARS) is a 413.")


class SendOut(Schema):
    user_message: MessageOut
    reply: MessageOut


class StopOut(Schema):
    message_id: int
    status: Literal["stopping"]


class PricesOut(Schema):
    input: str
    output: str
    cache_write_5m: str
    cache_write_1h: str
    cache_read: str


class ModelOut(Schema):
    id: str
    display_name: str
    context_window: int
    max_output_tokens: int
    is_default: bool
    prices: PricesOut = Field(description="USD per million tokens, as decimal strings.")

    @staticmethod
    def of(row: LLMModel) -> "ModelOut":
        return ModelOut(
            id=row.model_id, display_name=row.display_name, context_window=row.context_window,
            max_output_tokens=row.max_output_tokens, is_default=row.is_default,
            prices=PricesOut(
                input=str(row.input_price), output=str(row.output_price), cache_write_5m=str(row.cache_write_5m_price),
                cache_write_1h=str(row.cache_write_1h_price), cache_read=str(row.cache_read_price),
            ),
        )


class PromptOut(Schema):
    id: int
    name: str
    text: str
    is_default: bool

    @staticmethod
    def of(row: SystemPrompt) -> "PromptOut":
        return PromptOut(id=row.pk, name=row.name, text=row.text, is_default=row.is_default)


class SpendOut(Schema):
    calls: int
    input_tokens: int
    output_tokens: int
    cache_write_tokens: int
    cache_read_tokens: int
    cost: str = Field(description="USD as a decimal string.")
    saved_by_cache: str = Field(description="USD the cache saved (negative when writes cost more than reads gave back).")


class ModelSpendOut(SpendOut):
    kind: Literal["reply", "summary", "title"]
    model: str
    model_name: str


class DaySpendOut(Schema):
    day: str = Field(description="UTC date, YYYY-MM-DD.")
    cost: str
    calls: int


class BudgetOut(Schema):
    limit: str | None = Field(description="USD per calendar month (UTC); null: no limit.")
    spent: str
    remaining: str | None
    exhausted: bool
    resets_at: datetime


class UsageReportOut(Schema):
    period_start: datetime
    period_end: datetime
    total: SpendOut
    by_model: list[ModelSpendOut]
    days: list[DaySpendOut] = Field(description="Spend per UTC day, the last 30 days.")
    budget: BudgetOut


# --- Server-Sent Events: what each event's `data` holds (JSON) ----------------------------------


class SSECreated(Schema):
    user_message: MessageOut
    reply: MessageOut


class SSEDelta(Schema):
    offset: int = Field(description="Code points of the reply before this text.")
    text: str


class SSEDone(Schema):
    message_id: int
    generation_id: str
    status: MessageStatus = Field(description="`complete` or `stopped` (`error` and `interrupted` end with an `error` event).")
    error_code: str = Field(description="`max_tokens` when the reply was cut at the length limit, else empty.")
    usage: UsageOut
    cost: str = Field(description="USD as a decimal string.")
    content_length: int = Field(description="Code points of the whole reply.")


class SSEError(SSEDone):
    code: str = Field(description="Why the reply failed, e.g. `overloaded`, `rate_limited`, `stream_cut`, `interrupted`.")
    message: str


def sse_event_schema(*events: tuple[str, type[Schema]]) -> dict:
    """OpenAPI 3.1 for one event of a stream (`text/event-stream`): its name, and its `data` as
    embedded JSON. Models other operations use are referenced as ninja names them (class name)."""
    variants = []
    for name, model in events:
        data = model.model_json_schema(ref_template="#/components/schemas/{model}")
        data.pop("$defs", None)
        properties: dict = {
            "event": {"const": name},
            "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": data},
        }
        if name == "delta":
            properties["id"] = {"type": "string", "description": "The offset after this event (for Last-Event-ID)."}
        variants.append({"type": "object", "required": ["event", "data"], "properties": properties})
    return {"oneOf": variants}
