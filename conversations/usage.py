"""Reads for the usage page and the admin: what people spent, on what, and what caching saved.

Everything adds up the ledger (`UsageRecord`), which outlives deleted conversations, and is
aggregated in the database: a report is a handful of GROUP BY queries whatever the number of
records. Days and months are UTC, like the monthly budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone as dt_timezone
from decimal import Decimal
from typing import Any

from django.db.models import Count, DecimalField, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from . import budgets
from .models import LLMModel, UsageRecord

ZERO = Decimal(0)
CHART_DAYS = 30

_SUMS = {
    "calls": Count("id"),
    "input_tokens": Sum("input_tokens"),
    "output_tokens": Sum("output_tokens"),
    "cache_write_5m_tokens": Sum("cache_write_5m_tokens"),
    "cache_write_1h_tokens": Sum("cache_write_1h_tokens"),
    "cache_read_tokens": Sum("cache_read_tokens"),
    "cost": Sum("cost"),
    "uncached_cost": Sum("uncached_cost"),
}


@dataclass(frozen=True)
class Period:
    """[start, end): UTC midnights."""

    start: datetime
    end: datetime

    @property
    def days(self) -> list[date]:
        first, last = self.start.date(), (self.end - timedelta(microseconds=1)).date()
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def period_this_month(*, now: datetime | None = None) -> Period:
    return Period(start=budgets.month_start(now), end=budgets.next_month_start(now))


def period_last_days(*, days: int = CHART_DAYS, now: datetime | None = None) -> Period:
    """Today (UTC) and the days before it."""
    today = (now or timezone.now()).astimezone(dt_timezone.utc).date()
    end = datetime.combine(today + timedelta(days=1), time.min, tzinfo=dt_timezone.utc)
    return Period(start=end - timedelta(days=days), end=end)


def _sums(row: dict[str, Any]) -> dict[str, Any]:
    """An aggregate row's sums, with None (no records) as zero."""
    return {name: row.get(name) or (ZERO if name.endswith("cost") else 0) for name in _SUMS}


@dataclass(frozen=True)
class Spend:
    """The sum of some calls: their tokens by kind, what they cost, what they would have cost
    without the cache."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cache_read_tokens: int = 0
    cost: Decimal = ZERO
    uncached_cost: Decimal = ZERO

    def __add__(self, other: "Spend") -> "Spend":
        return Spend(**{name: getattr(self, name) + getattr(other, name) for name in _SUMS})

    @property
    def cache_write_tokens(self) -> int:
        return self.cache_write_5m_tokens + self.cache_write_1h_tokens

    @property
    def prompt_tokens(self) -> int:
        """Everything the prompts held; cache tokens are on top of input_tokens."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def saved(self) -> Decimal:
        """What caching saved against the same calls billed without it (negative when cache
        writes cost more than the reads gave back)."""
        return self.uncached_cost - self.cost

    @property
    def saved_share(self) -> float | None:
        return float(self.saved / self.uncached_cost) if self.uncached_cost > 0 else None

    @property
    def cache_hit_rate(self) -> float | None:
        return self.cache_read_tokens / self.prompt_tokens if self.prompt_tokens else None


@dataclass(frozen=True)
class ModelSpend(Spend):
    kind: str = UsageRecord.Kind.REPLY
    model_id: str = ""
    model_name: str = ""

    @property
    def kind_label(self) -> str:
        return {"reply": "Replies", "summary": "Summaries", "title": "Titles"}.get(self.kind, self.kind)


@dataclass(frozen=True)
class DaySpend:
    day: date
    cost: Decimal
    calls: int


@dataclass(frozen=True)
class UsageReport:
    period: Period
    total: Spend
    # One row per (kind, model): replies per model first, then summaries and titles, each
    # its own row so background work is never hidden inside the chat spend.
    rows: list[ModelSpend]
    by_kind: dict[str, Spend]
    chart_period: Period
    days: list[DaySpend]
    budget: budgets.BudgetStatus

    @property
    def budget_left(self) -> Decimal | None:
        if self.budget.limit is None:
            return None
        return max(self.budget.limit - self.budget.spent, ZERO)

    @property
    def chart_total(self) -> Decimal:
        return sum((d.cost for d in self.days), ZERO)


def _model_names() -> dict[str, str]:
    return dict(LLMModel.objects.values_list("model_id", "display_name"))


_KIND_ORDER = {UsageRecord.Kind.REPLY: 0, UsageRecord.Kind.SUMMARY: 1, UsageRecord.Kind.TITLE: 2}


def spend_by_model(*, records: QuerySet[UsageRecord], names: dict[str, str] | None = None) -> list[ModelSpend]:
    """One query: the records grouped by kind and model, replies first, dearest first."""
    names = _model_names() if names is None else names
    grouped = records.order_by().values("kind", "model").annotate(**_SUMS)
    rows = [
        ModelSpend(kind=row["kind"], model_id=row["model"], model_name=names.get(row["model"], row["model"]), **_sums(row))
        for row in grouped
    ]
    rows.sort(key=lambda r: (_KIND_ORDER.get(r.kind, 9), -r.cost, r.model_name))
    return rows


def spend_per_day(*, records: QuerySet[UsageRecord], period: Period) -> list[DaySpend]:
    """Every day of the period, the empty ones as zero (one query)."""
    grouped = (
        records.filter(created_at__gte=period.start, created_at__lt=period.end)
        .annotate(day=TruncDate("created_at", tzinfo=dt_timezone.utc))
        .order_by()
        .values("day")
        .annotate(cost=Sum("cost"), calls=Count("id"))
    )
    found = {row["day"]: row for row in grouped}
    return [
        DaySpend(day=day, cost=found[day]["cost"] or ZERO, calls=found[day]["calls"]) if day in found else DaySpend(day=day, cost=ZERO, calls=0)
        for day in period.days
    ]


def usage_report_for_user(*, user_id: int, period: Period | None = None, chart_period: Period | None = None, now: datetime | None = None) -> UsageReport:
    """A person's own usage: the period's spend (default this month) by model and kind, cache
    savings, spend per day (default the last 30 days) and the budget."""
    this_month = period_this_month(now=now)
    period = period or this_month
    chart_period = chart_period or period_last_days(now=now)
    mine = UsageRecord.objects.filter(user_id=user_id)
    rows = spend_by_model(records=mine.filter(created_at__gte=period.start, created_at__lt=period.end))
    total = sum(rows, Spend())
    by_kind: dict[str, Spend] = {kind: Spend() for kind in UsageRecord.Kind.values}
    for row in rows:
        by_kind[row.kind] = by_kind.get(row.kind, Spend()) + row
    # The budget counts this month's records; when that is the period, its total is ours.
    spent = total.cost if period == this_month else budgets.spent_this_month(user_id, now)
    budget = budgets.BudgetStatus(limit=budgets.limit_for(user_id), spent=spent, resets_at=this_month.end)
    return UsageReport(
        period=period, total=total, rows=rows, by_kind=by_kind, chart_period=chart_period,
        days=spend_per_day(records=mine, period=chart_period), budget=budget,
    )


@dataclass(frozen=True)
class UserSpend(Spend):
    user_id: int = 0
    username: str = ""


@dataclass(frozen=True)
class EveryoneReport:
    total: Spend
    users: list[UserSpend] = field(default_factory=list)
    user_count: int = 0
    rows: list[ModelSpend] = field(default_factory=list)


def spend_by_user(*, records: QuerySet[UsageRecord], limit: int | None = None) -> list[UserSpend]:
    """One query: the records' totals per person, dearest first."""
    grouped = records.order_by().values("user_id", "user__username").annotate(**_SUMS).order_by("-cost", "user__username")
    if limit is not None:
        grouped = grouped[:limit]
    return [UserSpend(user_id=row["user_id"], username=row["user__username"], **_sums(row)) for row in grouped]


def usage_report_for_everyone(*, records: QuerySet[UsageRecord] | None = None, period: Period | None = None, top: int = 10) -> EveryoneReport:
    """For admins: totals over every person's records (or over `records`, e.g. an admin
    changelist's filtered queryset), the top spenders and the split by model and kind."""
    records = UsageRecord.objects.all() if records is None else records
    if period is not None:
        records = records.filter(created_at__gte=period.start, created_at__lt=period.end)
    records = records.order_by()
    rows = spend_by_model(records=records)
    return EveryoneReport(
        total=sum(rows, Spend()),
        users=spend_by_user(records=records, limit=top),
        user_count=records.values("user_id").distinct().count(),
        rows=rows,
    )


# Per-row totals for admin lists: correlated subqueries, so a list page stays one query and
# joins added by search or filters cannot multiply the sums.
_MONEY_FIELD = DecimalField(max_digits=14, decimal_places=8)


def cost_of_conversation_subquery() -> Subquery:
    """Annotate conversations with everything billed for them (replies, summaries, titles)."""
    records = UsageRecord.objects.filter(conversation=OuterRef("pk")).order_by().values("conversation").annotate(total=Sum("cost")).values("total")
    return Subquery(records, output_field=_MONEY_FIELD)


def spent_this_month_subquery(*, user_ref: str = "pk", now: datetime | None = None) -> Subquery:
    """Annotate rows whose `user_ref` is a user id with that person's spend this month (UTC)."""
    records = (
        UsageRecord.objects.filter(user=OuterRef(user_ref), created_at__gte=budgets.month_start(now))
        .order_by().values("user").annotate(total=Sum("cost")).values("total")
    )
    return Subquery(records, output_field=_MONEY_FIELD)
