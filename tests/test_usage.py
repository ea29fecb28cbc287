"""The usage page (own spend, per day, per model, cache savings, budget) and the admin's views
of models, prices, budgets and the ledger."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone as dt_timezone
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import SpendLimit
from conversations import budgets, services, usage
from conversations.charts import daily_spend_chart, nice_ceiling
from conversations.llm import Usage
from conversations.models import LLMModel, UsageRecord
from conversations.pricing import Prices
from conversations.templatetags.usage_format import format_usd

pytestmark = pytest.mark.django_db

UTC = dt_timezone.utc
# A fixed "now" for the selectors: mid-March, so the last 30 days cross into February.
NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


def _record(user, cost, *, uncached=None, kind="reply", model="claude-sonnet-5-5", at=None, conversation=None, **tokens) -> UsageRecord:
    record = UsageRecord.objects.create(
        user=user, conversation=conversation, kind=kind, model=model,
        cost=Decimal(cost), uncached_cost=Decimal(cost if uncached is None else uncached), **tokens,
    )
    if at is not None:
        UsageRecord.objects.filter(pk=record.pk).update(created_at=at)
    return record


def _page(client) -> str:
    response = client.get(reverse("usage"))
    assert response.status_code == 200
    return response.content.decode()


def _text(html: str) -> str:
    """The page's text with tags dropped and whitespace collapsed, to assert sentences."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _svg(html: str) -> str:
    return re.search(r"<svg.*?</svg>", html, re.S).group(0)


# --- the page -----------------------------------------------------------------------------


def test_usage_page_requires_login(client):
    response = client.get(reverse("usage"))
    assert response.status_code == 302 and reverse("login") in response["Location"]


def test_usage_link_in_top_nav_for_logged_in_people(alice_client):
    html = alice_client.get(reverse("chat"), follow=True).content.decode()
    assert f'href="{reverse("usage")}"' in html


def test_usage_page_shows_own_totals_and_not_other_peoples(alice_client, alice, bob):
    _record(alice, "0.0042", input_tokens=1200, output_tokens=300)
    _record(bob, "7.77", model="claude-opus-5-5")
    html = _page(alice_client)
    assert '<strong id="usage-spent">$0.0042</strong>' in html
    assert "$7.77" not in html
    assert "Claude Opus 5.5" not in html
    assert "1,200" in html


def test_usage_page_with_no_records(alice_client):
    html = _page(alice_client)
    assert '<strong id="usage-spent">$0.00</strong>' in html
    assert "No calls to Claude this month yet." in html
    assert "Nothing yet this month." in html
    # The chart still has a bar (and a table row) per day.
    assert _svg(html).count("<title>") == usage.CHART_DAYS


def test_usage_page_shows_no_limit_when_none_applies(alice_client, alice):
    _record(alice, "1.50")
    html = _page(alice_client)
    assert '<strong id="usage-limit">No limit</strong>' in html
    assert 'role="progressbar"' not in html


def test_usage_page_shows_budget_progress_and_reset_date(alice_client, alice):
    SpendLimit.objects.create(user=alice, monthly_limit=Decimal("10.00"))
    _record(alice, "2.50")
    html = _page(alice_client)
    assert '<strong id="usage-limit">$10.00</strong>' in html
    assert 'aria-valuenow="25"' in html and "width: 25%" in html
    resets = budgets.next_month_start()
    assert f"resets on {resets:%B} {resets.day} (UTC)" in _text(html)
    assert "$7.50 left" in _text(html)


def test_default_limit_applies_to_people_without_their_own(alice_client, alice, bob):
    SpendLimit.objects.create(user=None, monthly_limit=Decimal("5.00"))
    SpendLimit.objects.create(user=bob, monthly_limit=Decimal("50.00"))
    html = _page(alice_client)
    assert '<strong id="usage-limit">$5.00</strong>' in html


def test_used_up_budget_says_so_and_bar_stays_full(alice_client, alice):
    SpendLimit.objects.create(user=alice, monthly_limit=Decimal("1.00"))
    _record(alice, "1.25")
    html = _page(alice_client)
    assert "Your budget for this month is used up" in html
    assert 'aria-valuenow="100"' in html and "is-exhausted" in html


def test_cache_savings_in_dollars_and_percent(alice_client, alice):
    sonnet = Prices.of(LLMModel.objects.get(model_id="claude-sonnet-5-5"))
    # 1,000 input + 99,000 cache reads + 1,000 output at $2 / $0.10 / $10 per MTok:
    # cost 0.002 + 0.0099 + 0.01 = 0.0219; uncached 100,000 × $2 + 1,000 × $10 = 0.21.
    services.usage_record(
        user_id=alice.pk, conversation_id=None, message_id=None, kind="reply",
        usage=Usage(input_tokens=1000, cache_read_input_tokens=99_000, output_tokens=1000), prices=sonnet,
    )
    report = usage.usage_report_for_user(user_id=alice.pk)
    assert report.total.cost == Decimal("0.0219")
    assert report.total.uncached_cost == Decimal("0.21")
    assert report.total.saved == Decimal("0.1881")
    assert report.total.cache_hit_rate == pytest.approx(0.99)
    html = _page(alice_client)
    assert '<strong id="usage-saved">$0.1881</strong>' in html
    assert '<span id="usage-saved-share">90%</span>' in html
    assert "Cache hit rate: 99%" in html


def test_cache_writes_that_never_paid_off_show_as_extra_cost(alice_client, alice):
    _record(alice, "0.0125", uncached="0.01", cache_write_5m_tokens=5000)
    html = _page(alice_client)
    assert "Caching cost" in html and "−$0.0025" in html


def test_per_model_rows_with_summaries_and_titles_on_their_own(alice_client, alice):
    _record(alice, "0.30", model="claude-sonnet-5-5", input_tokens=10)
    _record(alice, "0.20", model="claude-sonnet-5-5", input_tokens=5)
    _record(alice, "0.90", model="claude-opus-5-5")
    _record(alice, "0.001", kind="summary", model="claude-haiku-5-5")
    _record(alice, "0.0002", kind="title", model="claude-haiku-5-5")
    _record(alice, "0.05", model="claude-retired-1")  # no longer in the price table: shown by id
    rows = usage.usage_report_for_user(user_id=alice.pk).rows
    assert [(r.kind, r.model_name, r.calls, r.cost) for r in rows] == [
        ("reply", "Claude Opus 5.5", 1, Decimal("0.90")),
        ("reply", "Claude Sonnet 5.5", 2, Decimal("0.50")),
        ("reply", "claude-retired-1", 1, Decimal("0.05")),
        ("summary", "Claude Haiku 5.5", 1, Decimal("0.001")),
        ("title", "Claude Haiku 5.5", 1, Decimal("0.0002")),
    ]
    html = _text(_page(alice_client))
    assert "Claude Sonnet 5.5 Replies 2 15" in html
    assert "Claude Haiku 5.5 Summaries 1" in html
    assert "Claude Haiku 5.5 Titles 1" in html
    assert "Summaries: $0.0010" in html and "Titles: $0.0002" in html
    assert "Total 6" in html


def test_records_of_a_deleted_conversation_still_count(alice_client, alice):
    conversation = services.conversation_create(owner=alice)
    record = _record(alice, "0.75", conversation=conversation)
    conversation.delete()
    record.refresh_from_db()
    assert record.conversation_id is None
    assert '<strong id="usage-spent">$0.7500</strong>' in _page(alice_client)


def test_last_months_spend_is_not_this_months(alice, bob):
    _record(alice, "3.00", at=datetime(2026, 2, 27, 9, 0, tzinfo=UTC))
    _record(alice, "1.00", at=datetime(2026, 3, 1, 0, 0, tzinfo=UTC))
    report = usage.usage_report_for_user(user_id=alice.pk, now=NOW)
    assert report.total.cost == Decimal("1.00")
    assert report.budget.spent == budgets.status_for(alice.pk, now=NOW).spent == Decimal("1.00")
    assert report.budget.resets_at == datetime(2026, 4, 1, tzinfo=UTC)
    # The chart's 30 days reach back into February.
    assert report.chart_total == Decimal("4.00")


def test_spend_per_day_has_every_day_including_empty_ones(alice, bob):
    _record(alice, "0.10", at=datetime(2026, 3, 15, 0, 0, tzinfo=UTC))
    _record(alice, "0.20", at=datetime(2026, 3, 15, 11, 59, tzinfo=UTC))
    _record(alice, "0.40", at=datetime(2026, 3, 12, 23, 59, 59, tzinfo=UTC))
    _record(alice, "9.00", at=datetime(2026, 2, 13, 23, 59, tzinfo=UTC))  # 30 days before today: outside
    _record(alice, "0.80", at=datetime(2026, 2, 14, 0, 0, tzinfo=UTC))  # first day of the chart
    _record(bob, "5.00", at=datetime(2026, 3, 15, 1, 0, tzinfo=UTC))
    days = usage.usage_report_for_user(user_id=alice.pk, now=NOW).days
    assert len(days) == 30
    assert days[0].day == date(2026, 2, 14) and days[-1].day == date(2026, 3, 15)
    assert [d.day for d in days] == [date(2026, 2, 14) + timedelta(days=n) for n in range(30)]
    by_day = {d.day: (d.cost, d.calls) for d in days}
    assert by_day[date(2026, 3, 15)] == (Decimal("0.30"), 2)
    assert by_day[date(2026, 3, 12)] == (Decimal("0.40"), 1)
    assert by_day[date(2026, 2, 14)] == (Decimal("0.80"), 1)
    assert by_day[date(2026, 3, 13)] == (Decimal(0), 0)
    assert sum(1 for d in days if d.calls) == 3


def test_chart_is_accessible_svg_with_a_table_alternative(alice_client, alice):
    _record(alice, "0.0042")
    html = _page(alice_client)
    svg = re.search(r"<svg[^>]*>", html).group(0)
    assert 'role="img"' in svg and 'aria-label="Bar chart of spend per day' in svg
    assert _svg(html).count("<title>") == usage.CHART_DAYS
    today = timezone.now().astimezone(UTC).date()
    assert f"<title>{today:%b} {today.day}: $0.0042 (1 call)</title>" in html
    table = re.search(r'<table class="visually-hidden" id="usage-days-table">.*?</table>', html, re.S).group(0)
    assert table.count("<tr>") == usage.CHART_DAYS + 1
    assert f"<th scope=\"row\">{today:%Y-%m-%d}</th><td>$0.0042</td><td>1</td>" in table


def test_chart_bars_scale_to_a_round_axis_and_keep_tiny_days_visible():
    points = [(date(2026, 3, 1), Decimal("0.70"), 3), (date(2026, 3, 2), Decimal(0), 0), (date(2026, 3, 3), Decimal("0.0001"), 1)]
    chart = daily_spend_chart(points)
    assert [t.label for t in chart.ticks] == ["$0.00", "$0.4000", "$0.8000"]
    full = chart.plot_height
    assert chart.bars[0].height == pytest.approx(full * 0.7 / 0.8)
    assert chart.bars[1].height == 0
    assert chart.bars[2].height == 1.0
    assert nice_ceiling(0.0042) == pytest.approx(0.005) and nice_ceiling(3.2) == 4 and nice_ceiling(8.5) == 10 and nice_ceiling(0) == 0


def test_usage_page_query_count_does_not_grow_with_records(alice_client, alice, bob, django_assert_max_num_queries):
    SpendLimit.objects.create(user=alice, monthly_limit=Decimal("20"))
    _record(alice, "0.01")
    _page(alice_client)  # the first request after logging in also touches the session
    with CaptureQueriesContext(connection) as few:
        _page(alice_client)
    for n in range(60):
        _record(alice, "0.01", kind=("reply", "summary", "title")[n % 3], model=("claude-sonnet-5-5", "claude-opus-5-5", "claude-haiku-5-5")[n % 3],
                at=timezone.now() - timedelta(days=n % 20))
        _record(bob, "0.02")
    with django_assert_max_num_queries(8):
        _page(alice_client)
    with CaptureQueriesContext(connection) as many:
        _page(alice_client)
    assert len(many) == len(few)


def test_money_reads_as_under_replies_with_a_sign_for_extra_cost():
    assert format_usd(Decimal("0.0042")) == "$0.0042"
    assert format_usd(Decimal("12.345")) == "$12.35"
    assert format_usd(Decimal(0)) == "$0.00"
    assert format_usd(Decimal("-0.0025")) == "−$0.0025"
    assert format_usd(None) == "—"


# --- admins: everyone's usage ------------------------------------------------------------


def test_report_for_everyone_totals_per_person(alice, bob, charlie):
    _record(alice, "1.00", uncached="1.50")
    _record(alice, "0.50", kind="title", model="claude-haiku-5-5")
    _record(bob, "3.00", at=datetime(2026, 3, 2, tzinfo=UTC))
    _record(charlie, "9.00", at=datetime(2026, 2, 2, tzinfo=UTC))
    report = usage.usage_report_for_everyone(period=usage.period_this_month(now=NOW))
    assert [(u.username, u.calls, u.cost) for u in report.users] == [("bob", 1, Decimal("3.00"))]
    everything = usage.usage_report_for_everyone()
    assert [(u.username, u.cost) for u in everything.users] == [("charlie", Decimal("9.00")), ("bob", Decimal("3.00")), ("alice", Decimal("1.50"))]
    assert everything.total.cost == Decimal("13.50") and everything.total.saved == Decimal("0.50")
    assert everything.user_count == 3


@pytest.fixture
def ledger(alice, bob):
    _record(alice, "0.0042", uncached="0.0100", cache_read_tokens=900, input_tokens=100)
    _record(alice, "0.0010", kind="summary", model="claude-haiku-5-5")
    _record(bob, "2.00", uncached="2.00", model="claude-opus-5-5")


def test_admin_usage_list_shows_totals_per_user(admin_client, ledger):
    response = admin_client.get(reverse("admin:conversations_usagerecord_changelist"))
    assert response.status_code == 200
    html = response.content.decode()
    assert '<strong id="usage-total-cost">$2.01</strong>' in html  # 2.0052
    assert '<strong id="usage-total-saved">$0.0058</strong>' in html
    per_user = re.search(r'<table id="usage-per-user">.*?</table>', html, re.S).group(0)
    assert per_user.index("bob") < per_user.index("alice")
    assert "Claude Haiku 5.5</td><td>Summaries" in html


def test_admin_usage_totals_follow_the_filters(admin_client, alice, ledger):
    url = reverse("admin:conversations_usagerecord_changelist")
    html = admin_client.get(url, {"kind": "summary"}).content.decode()
    assert '<strong id="usage-total-cost">$0.0010</strong>' in html
    response = admin_client.get(url, {"user__id__exact": alice.pk})
    assert response.status_code == 200
    assert '<strong id="usage-total-cost">$0.0052</strong>' in response.content.decode()
    html = admin_client.get(url, {"q": "bob"}).content.decode()
    assert '<strong id="usage-total-cost">$2.00</strong>' in html


def test_admin_usage_records_are_read_only(admin_client, ledger):
    record = UsageRecord.objects.first()
    assert admin_client.get(reverse("admin:conversations_usagerecord_add")).status_code == 403
    assert admin_client.get(reverse("admin:conversations_usagerecord_delete", args=[record.pk])).status_code == 403
    change = admin_client.get(reverse("admin:conversations_usagerecord_change", args=[record.pk]))
    assert change.status_code == 200 and b'name="cost"' not in change.content
    assert admin_client.post(reverse("admin:conversations_usagerecord_change", args=[record.pk]), {"cost": "0"}).status_code == 403


def test_admin_model_list_shows_prices_and_editing_a_price_keeps_past_costs(admin_client, alice):
    response = admin_client.get(reverse("admin:conversations_llmmodel_changelist"))
    assert response.status_code == 200
    assert b"Claude Sonnet 5.5" in response.content and b"claude-haiku-5-5" in response.content
    sonnet = LLMModel.objects.get(model_id="claude-sonnet-5-5")
    past = services.usage_record(user_id=alice.pk, conversation_id=None, message_id=None, kind="reply",
                                 usage=Usage(input_tokens=1_000_000), prices=Prices.of(sonnet))
    change_url = reverse("admin:conversations_llmmodel_change", args=[sonnet.pk])
    page = admin_client.get(change_url).content.decode()
    assert "never past costs" in page
    data = {f: getattr(sonnet, f) for f in (
        "display_name", "model_id", "sort_order", "context_window", "max_output_tokens", "input_price", "output_price",
        "long_prompt_multiplier", "cache_write_5m_price", "cache_write_1h_price", "cache_read_price", "min_cache_tokens",
        "thinking_off", "tokenizer_factor")}
    data.update(enabled="on", is_default="on", thinks_by_default="on", long_prompt_threshold="", input_price="3")
    response = admin_client.post(change_url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    sonnet.refresh_from_db()
    past.refresh_from_db()
    assert sonnet.input_price == Decimal(3)
    assert past.cost == Decimal(2)


def test_admin_system_prompt_list_shows_cache_settings(admin_client):
    from conversations.models import SystemPrompt

    SystemPrompt.objects.create(name="Long-lived", cache_ttl="1h")
    response = admin_client.get(reverse("admin:conversations_systemprompt_changelist"), {"cache_ttl": "1h"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Long-lived" in html and "1 hour" in html


def test_admin_conversation_list_shows_total_cost_without_n_plus_1(admin_client, alice, django_assert_max_num_queries):
    url = reverse("admin:conversations_conversation_changelist")
    first = services.conversation_create(owner=alice)
    _record(alice, "0.25", conversation=first)
    _record(alice, "0.0005", kind="title", model="claude-haiku-5-5", conversation=first)
    html = admin_client.get(url).content.decode()
    assert "$0.2505" in html
    with CaptureQueriesContext(connection) as one:
        admin_client.get(url)
    for _ in range(8):
        _record(alice, "0.10", conversation=services.conversation_create(owner=alice))
    with CaptureQueriesContext(connection) as many:
        admin_client.get(url, {"q": "alice"})
    assert len(many) <= len(one) + 1  # a search adds at most the unfiltered count


def test_admin_conversation_page_shows_summaries_read_only(admin_client, alice):
    from conversations.models import Message, Summary

    conversation = services.conversation_create(owner=alice)
    message = Message.objects.create(conversation=conversation, role="user", content="hello")
    Summary.objects.create(conversation=conversation, upto=message, text="They said hello.", model="claude-haiku-5-5", covered_messages=1)
    response = admin_client.get(reverse("admin:conversations_conversation_change", args=[conversation.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "They said hello." in html and 'name="summaries-0-text"' not in html


def test_admin_spend_limits_list_default_row_and_spend(admin_client, alice, bob, django_assert_max_num_queries):
    SpendLimit.objects.create(user=None, monthly_limit=Decimal("5"))
    SpendLimit.objects.create(user=alice, monthly_limit=None)
    SpendLimit.objects.create(user=bob, monthly_limit=Decimal("12.50"))
    _record(bob, "3.25")
    _record(bob, "1.00", at=timezone.now() - timedelta(days=40))
    url = reverse("admin:accounts_spendlimit_changelist")
    with django_assert_max_num_queries(8):
        response = admin_client.get(url)
    assert response.status_code == 200
    html = _text(response.content.decode())
    assert html.index("Default (everyone)") < html.index("alice") < html.index("bob")
    assert "alice No limit" in html
    assert "bob $12.50 $3.25" in html


def test_admin_second_default_spend_limit_is_refused(admin_client):
    SpendLimit.objects.create(user=None, monthly_limit=Decimal("5"))
    response = admin_client.post(reverse("admin:accounts_spendlimit_add"), {"user": "", "monthly_limit": "7"})
    assert response.status_code == 200 and b"already a default row" in response.content
    assert SpendLimit.objects.filter(user=None).count() == 1


def test_admin_user_page_edits_the_persons_limit_inline(admin_client, alice):
    url = reverse("admin:auth_user_change", args=[alice.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="spend_limit-0-monthly_limit"' in html
    assert 'name="username"' in html and "Permissions" in html  # the rest of UserAdmin is kept
    data = {
        "username": "alice", "first_name": "", "last_name": "", "email": "alice@example.com", "is_active": "on",
        "last_login_0": "", "last_login_1": "", "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00",
        "spend_limit-TOTAL_FORMS": "1", "spend_limit-INITIAL_FORMS": "0", "spend_limit-MIN_NUM_FORMS": "0", "spend_limit-MAX_NUM_FORMS": "1",
        "spend_limit-0-monthly_limit": "15.00", "spend_limit-0-user": str(alice.pk), "spend_limit-0-id": "",
    }
    response = admin_client.post(url, data)
    assert response.status_code == 302, _text(response.content.decode())[:3000]
    assert SpendLimit.objects.get(user=alice).monthly_limit == Decimal("15.00")


def test_people_who_are_not_staff_cannot_open_the_admin_pages(alice_client, alice):
    for url in (
        reverse("admin:conversations_usagerecord_changelist"),
        reverse("admin:conversations_llmmodel_changelist"),
        reverse("admin:accounts_spendlimit_changelist"),
        reverse("admin:conversations_conversation_changelist"),
        reverse("admin:auth_user_change", args=[alice.pk]),
    ):
        response = alice_client.get(url)
        assert response.status_code == 302 and reverse("admin:login") in response["Location"], url


def test_admin_pages_open_for_a_superuser(admin_client, alice, ledger):
    SpendLimit.objects.create(user=None, monthly_limit=Decimal("5"))
    for url in (
        reverse("admin:conversations_llmmodel_changelist"),
        reverse("admin:conversations_usagerecord_changelist"),
        reverse("admin:accounts_spendlimit_changelist"),
        reverse("admin:conversations_conversation_changelist"),
        reverse("admin:auth_user_changelist"),
        reverse("admin:auth_user_change", args=[alice.pk]),
        reverse("admin:conversations_llmmodel_change", args=[LLMModel.objects.first().pk]),
        reverse("admin:accounts_spendlimit_change", args=[SpendLimit.objects.first().pk]),
    ):
        assert admin_client.get(url).status_code == 200, url
