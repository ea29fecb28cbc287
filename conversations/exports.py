"""A conversation as a file, and back: Markdown and JSON exports, JSON import.

The JSON export is Chatsite's own format (`FORMAT`, `VERSION`): the conversation's title, model
and system prompt, then its messages oldest first, each with a file-local `id` and `parent_id`
(1, 2, 3… in export order: no database id leaves the server), role, content, status,
timestamps and, for replies, the model, the token usage and the cost at the prices of the time.
By default that is the visible thread; `branches=True` adds every other version (edited
messages, regenerated replies), with `current_leaf_id` saying which thread was on screen.

An import makes a new conversation owned by the importer with the same messages and tree. The
file is untrusted input: its shape and sizes are checked with plain-language errors, its ids
only map parents inside the file, every message is stored as complete, and its usage and costs
are informational only — shown under the replies, never written to the usage ledger, so
budgets and the usage page count what this server spent and nothing else.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone as dt_timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.http import Http404
from django.utils import timezone
from django.utils.text import slugify

from . import formatting, modelcache, selectors
from .cleantext import storable
from .errors import ChatError
from .models import Conversation, LLMModel, Message

FORMAT = "chatsite.conversation"
VERSION = 1
MAX_IMPORT_MESSAGES = 10_000
MAX_IMPORT_CONTENT_CHARS = 1_000_000  # per message: replies can be longer than what a person may send
MAX_IMPORT_SYSTEM_PROMPT_CHARS = 200_000
_USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "cache_creation_1h_input_tokens")
_MAX_TOKENS = 2**31 - 1  # PositiveIntegerField on every database
_MAX_COST = Decimal("1000000")
_COST_PLACES = Decimal("1E-8")


# --- export ----------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(dt_timezone.utc).isoformat().replace("+00:00", "Z") if value else None


def _exported_messages(*, conversation: Conversation, branches: bool) -> tuple[list[Message], Message | None]:
    messages = list(Message.objects.filter(conversation=conversation).order_by("created_at", "id"))
    thread = selectors.conversation_thread(conversation=conversation, messages=messages)
    leaf = thread[-1] if thread else None
    if not branches:
        return thread, leaf
    # Parents before children, whatever the timestamps say (an import may carry odd ones).
    by_parent: dict[int | None, list[Message]] = {}
    ids = {m.pk for m in messages}
    for m in messages:
        by_parent.setdefault(m.parent_id if m.parent_id in ids else None, []).append(m)
    ordered: list[Message] = []
    stack = list(reversed(by_parent.get(None, [])))
    while stack:
        node = stack.pop()
        ordered.append(node)
        stack.extend(reversed(by_parent.get(node.pk, [])))
    return ordered, leaf


def conversation_export_data(*, conversation: Conversation, branches: bool = False) -> dict[str, Any]:
    """The JSON export as a dict (see the module docstring)."""
    messages, leaf = _exported_messages(conversation=conversation, branches=branches)
    local = {m.pk: n for n, m in enumerate(messages, start=1)}
    totals = {name: 0 for name in _USAGE_FIELDS}
    cost = Decimal(0)
    items = []
    for m in messages:
        item: dict[str, Any] = {
            "id": local[m.pk],
            "parent_id": local.get(m.parent_id) if m.parent_id else None,
            "role": m.role,
            "content": m.content,
            "status": m.status,
            "created_at": _iso(m.created_at),
        }
        if m.role == Message.Role.ASSISTANT:
            usage = {name: getattr(m, name) for name in _USAGE_FIELDS}
            for name, value in usage.items():
                totals[name] += value
            cost += m.cost
            item.update(
                model=m.model,
                finished_at=_iso(m.finished_at),
                stop_reason=m.stop_reason,
                usage=usage,
                cost=_cost_str(m.cost),
            )
            if m.error:
                item["error"] = m.error
        items.append(item)
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": _iso(timezone.now()),
        "scope": "all" if branches else "thread",
        "conversation": {
            "title": conversation.title,
            "model": conversation.model,
            "system_prompt": conversation.system_prompt,
            "preset": conversation.preset.name if conversation.preset_id and conversation.preset else None,
            "created_at": _iso(conversation.created_at),
            "current_leaf_id": local.get(leaf.pk) if leaf else None,
            # The replies in this file, at the prices of their time (summaries and titles, billed
            # on their own, are on the usage page).
            "usage": {**totals, "cost": _cost_str(cost)},
        },
        "messages": items,
    }


def _cost_str(value: Decimal) -> str:
    return f"{Decimal(value).quantize(_COST_PLACES).normalize():f}"


def conversation_export_json(*, conversation: Conversation, branches: bool = False) -> str:
    return json.dumps(conversation_export_data(conversation=conversation, branches=branches), ensure_ascii=False, indent=2) + "\n"


def _when(value: datetime | None) -> str:
    return value.astimezone(dt_timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if value else ""


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines()) or ">"


def conversation_export_markdown(*, conversation: Conversation) -> str:
    """The visible thread as a Markdown document: a header, the system prompt, then each turn."""
    thread, _ = _exported_messages(conversation=conversation, branches=False)
    replies = [m for m in thread if m.role == Message.Role.ASSISTANT]
    cost = sum((m.cost for m in replies), Decimal(0))
    tokens_in = sum(m.input_tokens + m.cache_creation_input_tokens + m.cache_read_input_tokens for m in replies)
    tokens_out = sum(m.output_tokens for m in replies)
    lines = [
        f"# {_one_line(conversation.display_title)}",
        "",
        f"- Model: {conversation.model}",
        f"- Started: {_when(conversation.created_at)}",
        f"- Exported: {_when(timezone.now())}",
        f"- Replies: {len(replies)} · {formatting.tokens(tokens_in)} tokens in · {formatting.tokens(tokens_out)} out · {formatting.usd(cost)}",
        "",
    ]
    if conversation.system_prompt.strip():
        name = conversation.preset.name if conversation.preset_id and conversation.preset else "System prompt"
        lines += [f"**System prompt** ({_one_line(name)}):", "", _quote(conversation.system_prompt), ""]
    for m in thread:
        lines += ["---", ""]
        if m.role == Message.Role.USER:
            lines += ["## You", f"*{_when(m.created_at)}*", ""]
        else:
            usage = formatting.reply_usage(m)
            meta = f"{_when(m.created_at)} · {usage.input} in · {usage.output} out · {usage.cost}"
            if m.status != Message.Status.COMPLETE:
                meta += f" · {m.status}"
            lines += [f"## Claude ({m.model or conversation.model})", f"*{meta}*", ""]
        lines += [m.content.rstrip("\n") or "*(empty)*", ""]
    return "\n".join(lines)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def message_source(*, conversation: Conversation, message_id: int) -> str:
    """The markdown text of one message of `conversation` (the caller checked the owner)."""
    content = Message.objects.filter(conversation=conversation, pk=message_id).values_list("content", flat=True).first()
    if content is None:
        raise Http404("No such message")
    return content


def export_filename(conversation: Conversation, extension: str) -> str:
    slug = slugify(conversation.title)[:60].strip("-") or "conversation"
    return f"chatsite-{slug}-{conversation.created_at:%Y%m%d}.{extension}"


# --- import ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportResult:
    conversation: Conversation
    message_count: int
    # Set when the file's model is not offered here and the default model was used instead.
    replaced_model: str = ""


def _fail(message: str) -> ChatError:
    return ChatError("bad_import", message)


def _text(value: Any, *, field: str, limit: int, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise _fail(f"{field} must be text.")
    if len(value) > limit:
        raise _fail(f"{field} is too long ({len(value):,} characters; the limit is {limit:,}).")
    # What JSON can carry but a database cannot store (NUL, lone surrogates): cleantext's rule.
    return storable(value)


def _timestamp(value: Any) -> datetime | None:
    """An ISO 8601 time from the file, or None (then: now). Odd values are not an error."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=dt_timezone.utc)
    try:  # what is stored is UTC: 0001-01-01T00:00:00+23:59 is before year 1 there
        return parsed.astimezone(dt_timezone.utc)
    except OverflowError:
        return None


def _usage(value: Any, where: str) -> dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(f"{where}: usage must be an object of token counts.")
    usage = {}
    for name in _USAGE_FIELDS:
        count = value.get(name, 0)
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= _MAX_TOKENS:
            raise _fail(f"{where}: usage.{name} must be a whole number of tokens.")
        usage[name] = count
    return usage


def _cost(value: Any, where: str) -> Decimal:
    if value is None:
        return Decimal(0)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _fail(f"{where}: cost must be a number of dollars.")
    try:
        cost = Decimal(str(value))
    except InvalidOperation:
        raise _fail(f"{where}: cost must be a number of dollars.") from None
    if not cost.is_finite() or not Decimal(0) <= cost <= _MAX_COST:
        raise _fail(f"{where}: cost must be a number of dollars.")
    return cost.quantize(_COST_PLACES)


_ID = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


def _local_id(value: Any, where: str) -> str:
    """A message's id in the file, only used to find parents within the file."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not _ID.fullmatch(str(value)):
        raise _fail(f"{where}: id must be a number or a short name.")
    return str(value)


def file_size(count: int) -> str:
    """2.5 MB, 740 KB: how a file size reads in messages."""
    return f"{count / 1e6:.1f} MB" if count >= 1e6 else f"{max(1, round(count / 1000))} KB"


def too_large(size: int) -> str | None:
    """The refusal for an import file of `size` bytes, or None if it is small enough."""
    limit = settings.CHATSITE_IMPORT_MAX_BYTES
    return f"That file is {file_size(size)}; the limit is {file_size(limit)}." if size > limit else None


def parse_import(raw: bytes) -> dict[str, Any]:
    """The file's JSON, or a ChatError saying what is wrong with it."""
    refusal = too_large(len(raw))
    if refusal:
        raise _fail(refusal)
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except (ValueError, RecursionError):  # (ValueError: bad UTF-8, bad JSON, an integer of 4,300+ digits)
        raise _fail("That file is not a Chatsite JSON export (it is not valid JSON).") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise _fail("That file is not a Chatsite JSON export (use Export → JSON on a conversation).")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _fail("That export has no valid format version.")
    if version > VERSION:
        raise _fail(f"That export is format version {version}; this server reads up to version {VERSION}.")
    return data


@dataclass
class _Item:
    key: str
    parent: str | None
    role: str
    content: str
    model: str
    usage: dict[str, int]
    cost: Decimal
    stop_reason: str
    created_at: datetime | None
    finished_at: datetime | None


def _items(data: dict[str, Any]) -> list[_Item]:
    messages = data.get("messages")
    if not isinstance(messages, list):
        raise _fail("The export has no list of messages.")
    if not messages:
        raise _fail("The export has no messages.")
    if len(messages) > MAX_IMPORT_MESSAGES:
        raise _fail(f"The export has {len(messages):,} messages; the limit is {MAX_IMPORT_MESSAGES:,}.")
    items: list[_Item] = []
    seen: set[str] = set()
    for n, raw in enumerate(messages, start=1):
        where = f"Message {n}"
        if not isinstance(raw, dict):
            raise _fail(f"{where} is not an object.")
        key = _local_id(raw.get("id", n), where)
        if key in seen:
            raise _fail(f"{where}: id {key} is used twice.")
        parent = raw.get("parent_id")
        parent_key = None if parent is None else _local_id(parent, where)
        if parent_key is not None and parent_key not in seen:
            raise _fail(f"{where}: its parent ({parent_key}) must come earlier in the file.")
        role = raw.get("role")
        if role not in (Message.Role.USER, Message.Role.ASSISTANT):
            raise _fail(f'{where}: role must be "user" or "assistant".')
        content = _text(raw.get("content"), field=f"{where}: content", limit=MAX_IMPORT_CONTENT_CHARS, required=True)
        assistant = role == Message.Role.ASSISTANT
        items.append(_Item(
            key=key,
            parent=parent_key,
            role=role,
            content=content,
            model=_text(raw.get("model"), field=f"{where}: model", limit=100) if assistant else "",
            usage=_usage(raw.get("usage"), where) if assistant else {},
            cost=_cost(raw.get("cost"), where) if assistant else Decimal(0),
            stop_reason=_text(raw.get("stop_reason"), field=f"{where}: stop_reason", limit=32) if assistant else "",
            created_at=_timestamp(raw.get("created_at")),
            finished_at=_timestamp(raw.get("finished_at")) if assistant else None,
        ))
        seen.add(key)
    return items


def _import_model(name: str) -> tuple[LLMModel, str]:
    """The file's model if it is offered here; else the default (and the name it replaced)."""
    row = LLMModel.objects.filter(model_id=name, enabled=True).first() if name else None
    if row is not None:
        return row, ""
    default = modelcache.default_model()
    if default is None:
        raise ChatError("bad_model", "No model is enabled on this server. Ask an administrator.")
    return default, name


def conversation_import(*, owner: AbstractBaseUser, raw: bytes) -> ImportResult:
    """A new conversation of `owner` from a JSON export (see the module docstring)."""
    data = parse_import(raw)
    meta = data.get("conversation") or {}
    if not isinstance(meta, dict):
        raise _fail("The export's conversation must be an object.")
    title = " ".join(_text(meta.get("title"), field="The title", limit=10_000).split())[:200]
    system_prompt = _text(meta.get("system_prompt"), field="The system prompt", limit=MAX_IMPORT_SYSTEM_PROMPT_CHARS)
    model_name = _text(meta.get("model"), field="The model", limit=100)
    items = _items(data)
    keys = {item.key for item in items}
    leaf_key = meta.get("current_leaf_id")
    leaf_key = str(leaf_key) if isinstance(leaf_key, (int, str)) and not isinstance(leaf_key, bool) and str(leaf_key) in keys else items[-1].key
    model, replaced = _import_model(model_name)
    now = timezone.now()

    with transaction.atomic():
        conversation = Conversation.objects.create(
            owner=owner,
            title=title,
            title_source=Conversation.TitleSource.USER if title else Conversation.TitleSource.NONE,
            model=model.model_id,
            system_prompt=system_prompt,
        )
        rows = [
            Message(
                conversation=conversation,
                role=item.role,
                content=item.content,
                status=Message.Status.COMPLETE,
                model=item.model,
                cost=item.cost,
                stop_reason=item.stop_reason,
                finished_at=(item.finished_at or item.created_at or now) if item.role == Message.Role.ASSISTANT else None,
                **item.usage,
            )
            for item in items
        ]
        # One insert for all (ids come back on PostgreSQL and SQLite), then parents and the
        # file's timestamps in one batched update: auto_now_add would overwrite them on insert.
        Message.objects.bulk_create(rows, batch_size=500)
        by_key = {item.key: row for item, row in zip(items, rows)}
        for item, row in zip(items, rows):
            row.parent = by_key[item.parent] if item.parent else None
            row.created_at = item.created_at or now
        Message.objects.bulk_update(rows, ["parent", "created_at"], batch_size=500)
        conversation.current_leaf = by_key[leaf_key]
        conversation.save(update_fields=["current_leaf", "updated_at"])
    return ImportResult(conversation=conversation, message_count=len(rows), replaced_model=replaced)
