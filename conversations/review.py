"""Reads for reviewing conversations in the admin: states, cost ranges and per-person totals.

Everything is annotated or aggregated in the database, so a page of the admin costs the same
few queries whatever it shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, DecimalField, Exists, IntegerField, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from .models import Conversation, Message, UsageRecord

ZERO = Decimal(0)
_MONEY = DecimalField(max_digits=14, decimal_places=8)


def _ledger_total(**filters) -> Subquery:
    records = UsageRecord.objects.filter(**filters).order_by().values(*filters).annotate(total=Sum("cost")).values("total")
    return Coalesce(Subquery(records, output_field=_MONEY), Value(ZERO), output_field=_MONEY)


def _count(model, **filters) -> Coalesce:
    rows = model.objects.filter(**filters).order_by().values(*filters).annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(rows, output_field=IntegerField()), Value(0))


def _has_message(status: str) -> Exists:
    return Exists(Message.objects.filter(conversation=OuterRef("pk"), status=status))


def conversations_for_review(queryset: QuerySet[Conversation]) -> QuerySet[Conversation]:
    """Conversations with what the review list shows and filters on: everything billed for them
    (replies, summaries, titles), their message count and whether a reply failed, is streaming
    or was interrupted."""
    return queryset.annotate(
        total_cost=_ledger_total(conversation=OuterRef("pk")),
        message_count=_count(Message, conversation=OuterRef("pk")),
        has_error=_has_message(Message.Status.ERROR),
        has_streaming=_has_message(Message.Status.STREAMING),
        has_interrupted=_has_message(Message.Status.INTERRUPTED),
    )


# State filter: (value, label, condition on an annotated queryset).
STATES: list[tuple[str, str, Q]] = [
    ("open", "Open (not archived or deleted)", Q(archived_at__isnull=True, deleted_at__isnull=True)),
    ("errors", "Has a failed reply", Q(has_error=True)),
    ("streaming", "Has a reply being written", Q(has_streaming=True)),
    ("interrupted", "Has an interrupted reply", Q(has_interrupted=True)),
    ("archived", "Archived", Q(archived_at__isnull=False, deleted_at__isnull=True)),
    ("deleted", "Deleted (pending purge)", Q(deleted_at__isnull=False)),
]

# Cost filter over the ledger total, USD: (value, label, low inclusive, high exclusive).
COST_RANGES: list[tuple[str, str, Decimal | None, Decimal | None]] = [
    ("free", "Nothing billed", None, Decimal("0.00000001")),
    ("lt-0.01", "Under $0.01", Decimal("0.00000001"), Decimal("0.01")),
    ("0.01-0.10", "$0.01 – $0.10", Decimal("0.01"), Decimal("0.10")),
    ("0.10-1", "$0.10 – $1", Decimal("0.10"), Decimal("1")),
    ("1-10", "$1 – $10", Decimal("1"), Decimal("10")),
    ("10+", "$10 and more", Decimal("10"), None),
]


def filter_state(queryset: QuerySet[Conversation], value: str) -> QuerySet[Conversation]:
    for key, _label, condition in STATES:
        if key == value:
            return queryset.filter(condition)
    return queryset


def filter_cost(queryset: QuerySet[Conversation], value: str) -> QuerySet[Conversation]:
    for key, _label, low, high in COST_RANGES:
        if key == value:
            if low is not None:
                queryset = queryset.filter(total_cost__gte=low)
            if high is not None:
                queryset = queryset.filter(total_cost__lt=high)
            return queryset
    return queryset


def users_with_totals(queryset):
    """People with their number of conversations and messages and everything billed to them
    (the ledger: it includes deleted conversations)."""
    return queryset.annotate(
        conversation_count=_count(Conversation, owner=OuterRef("pk")),
        message_count=_count(Message, conversation__owner=OuterRef("pk")),
        total_cost=_ledger_total(user=OuterRef("pk")),
    )


@dataclass(frozen=True)
class PersonTotals:
    user_id: int
    username: str
    conversations: int
    messages: int
    cost: Decimal


def totals_per_person(conversations: QuerySet[Conversation], *, limit: int = 10) -> tuple[list[PersonTotals], int]:
    """For the conversations given (e.g. a filtered admin list): per person, how many, their
    messages and what they cost, most expensive first; and how many people in all.

    Three GROUP BY queries whatever the number of rows.
    """
    ids = conversations.order_by().values("pk")
    people = list(
        Conversation.objects.filter(pk__in=ids).order_by().values("owner", "owner__username").annotate(n=Count("pk"))
    )
    messages = dict(
        Message.objects.filter(conversation__in=ids).order_by().values("conversation__owner").annotate(n=Count("pk")).values_list("conversation__owner", "n")
    )
    costs = dict(
        UsageRecord.objects.filter(conversation__in=ids).order_by().values("user").annotate(total=Sum("cost")).values_list("user", "total")
    )
    rows = [
        PersonTotals(
            user_id=row["owner"], username=row["owner__username"], conversations=row["n"], messages=messages.get(row["owner"], 0),
            cost=(costs.get(row["owner"]) or ZERO).quantize(Decimal("1E-8")),
        )
        for row in people
    ]
    rows.sort(key=lambda r: (-r.cost, -r.conversations, r.username))
    return rows[:limit], len(rows)
