"""Exports of conversations chosen in the admin, for review outside it.

JSON: each conversation in the person-facing export format (`exports.conversation_export_data`,
every branch included, so an entry can be re-imported as it is), plus an `admin` object with
what only a reviewer needs: database id, owner, prompt version, archive/delete state and the
ledger total (replies, summaries and titles). CSV: one row per message with database ids,
usage, cost and error, for spreadsheets.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from . import exports, review, selectors
from .models import Conversation, Message


# The ledger's precision (SQLite sums decimals with float noise).
_MONEY_PLACES = Decimal("1E-8")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _loaded(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    """The selection again, fresh (whatever the admin's list annotated or made distinct), by id."""
    ids = conversations.order_by().values("pk")
    return review.conversations_for_review(Conversation.objects.filter(pk__in=ids)).select_related("owner", "preset", "prompt_version").order_by("pk")


def _admin_facts(conversation: Conversation) -> dict[str, Any]:
    version = conversation.prompt_version
    return {
        "id": conversation.pk,
        "owner": {"id": conversation.owner_id, "username": conversation.owner.get_username()},
        "prompt": {"id": conversation.preset_id, "name": conversation.preset.name} if conversation.preset else None,
        "prompt_version": {"id": version.pk, "number": version.number} if version else None,
        "updated_at": _iso(conversation.updated_at),
        "archived_at": _iso(conversation.archived_at),
        "deleted_at": _iso(conversation.deleted_at),
        "ledger_cost": str(Decimal(conversation.total_cost).quantize(_MONEY_PLACES)),  # type: ignore[attr-defined]
    }


def conversations_export_json(conversations: QuerySet[Conversation]) -> dict[str, Any]:
    return {
        "format": "chatsite.admin-export",
        "version": 1,
        "exported_at": timezone.now().isoformat(),
        "conversations": [
            {**exports.conversation_export_data(conversation=c, branches=True), "admin": _admin_facts(c)} for c in _loaded(conversations)
        ],
    }


CSV_COLUMNS = [
    "conversation_id", "conversation_title", "owner", "prompt", "prompt_version",
    "message_id", "parent_id", "on_thread", "role", "status", "model", "created_at",
    "input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "cost",
    "stop_reason", "error_code", "error", "content",
]
# A cell starting with one of these is a formula to a spreadsheet: a message could run one.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def conversations_export_csv(conversations: QuerySet[Conversation]) -> str:
    """Two queries whatever the selection: the conversations, then all their messages."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    messages = Message.objects.order_by("created_at", "id")
    for c in _loaded(conversations).prefetch_related(Prefetch("messages", queryset=messages, to_attr="all_messages")):
        all_messages: list[Message] = c.all_messages  # type: ignore[attr-defined]
        on_thread = {m.pk for m in selectors.conversation_thread(conversation=c, messages=all_messages)}
        version = c.prompt_version
        for m in all_messages:
            row = [
                c.pk, c.title, c.owner.get_username(), c.preset.name if c.preset else "", version.number if version else "",
                m.pk, m.parent_id or "", m.pk in on_thread, m.role, m.status, m.model, _iso(m.created_at),
                m.input_tokens, m.output_tokens, m.cache_creation_input_tokens, m.cache_read_input_tokens, m.cost,
                m.stop_reason, m.error_code, m.error, m.content,
            ]
            writer.writerow([_cell(v) for v in row])
    return out.getvalue()
