"""The usage page: what the person spent this month, on what, and what caching saved."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from . import usage
from .charts import daily_spend_chart


@login_required
def usage_page(request: HttpRequest) -> HttpResponse:
    report = usage.usage_report_for_user(user_id=request.user.pk)
    chart = daily_spend_chart([(d.day, d.cost, d.calls) for d in report.days])
    return render(request, "conversations/usage.html", {"report": report, "chart": chart})
