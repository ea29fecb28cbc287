"""Monthly spend limits: what a person may still spend, checked before any call to Claude."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone as dt_timezone
from decimal import Decimal

from django.db.models import Sum
from django.utils import timezone

from accounts.models import SpendLimit

from .errors import ChatError
from .models import UsageRecord


def month_start(now: datetime | None = None) -> datetime:
    now = now or timezone.now()
    return now.astimezone(dt_timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month_start(now: datetime | None = None) -> datetime:
    start = month_start(now)
    return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)


def limit_for(user_id: int) -> Decimal | None:
    """The person's own limit if set, else the default row's; None means no limit.

    The whole table (one row per person with a limit, plus the default) is kept a few seconds
    per process, like prices: a burst of sends from many people costs one query, not one each.
    """
    from . import modelcache

    rows = modelcache.cached(("spend_limits", None), _load_limits)
    return rows[user_id] if user_id in rows else rows.get(None)


def _load_limits() -> dict[int | None, Decimal]:
    return dict(SpendLimit.objects.values_list("user_id", "monthly_limit"))


def spent_this_month(user_id: int, now: datetime | None = None) -> Decimal:
    total = UsageRecord.objects.filter(user_id=user_id, created_at__gte=month_start(now)).aggregate(total=Sum("cost"))["total"]
    return total or Decimal(0)


@dataclass(frozen=True)
class BudgetStatus:
    limit: Decimal | None
    spent: Decimal
    resets_at: datetime

    @property
    def exhausted(self) -> bool:
        return self.limit is not None and self.spent >= self.limit

    @property
    def share_used(self) -> float | None:
        if self.limit is None:
            return None
        return float(self.spent / self.limit) if self.limit > 0 else 1.0


def status_for(user_id: int, now: datetime | None = None) -> BudgetStatus:
    return BudgetStatus(limit=limit_for(user_id), spent=spent_this_month(user_id, now), resets_at=next_month_start(now))


def ensure_within_budget(user_id: int) -> None:
    """Raise ChatError("over_budget") when the person's monthly limit is used up.

    One small query when no limit applies; the month's total only when one does.
    """
    limit = limit_for(user_id)
    if limit is None:
        return
    spent = spent_this_month(user_id)
    if spent >= limit:
        resets = next_month_start().strftime("%B %-d")
        raise ChatError(
            "over_budget",
            f"You have used ${spent:.2f} of your ${limit:.2f} monthly budget, so Claude cannot answer until it resets on {resets}. "
            "Ask an administrator if you need more.",
        )
