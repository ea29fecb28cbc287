"""Cost of a call from its usage: every token billed once, at its own rate."""

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from accounts.models import SpendLimit
from conversations import budgets, services
from conversations.errors import ChatError
from conversations.llm import Usage
from conversations.models import LLMModel, UsageRecord
from conversations.pricing import Prices, billed_equivalent_input, cost_of

SONNET = Prices("claude-sonnet-5-5", Decimal("2"), Decimal("10"), Decimal("2.50"), Decimal("4"), Decimal("0.10"))


def test_cache_tokens_are_billed_once_at_their_own_rates():
    usage = Usage(input_tokens=1_000, output_tokens=500, cache_creation_input_tokens=3_000, cache_read_input_tokens=20_000,
                  cache_creation_1h_input_tokens=1_000)
    cost = cost_of(usage, SONNET)
    # 1k input at $2, 500 output at $10, 2k 5-minute writes at $2.50, 1k 1-hour writes at $4, 20k reads at $0.10.
    expected = (1_000 * 2 + 500 * 10 + 2_000 * Decimal("2.50") + 1_000 * 4 + 20_000 * Decimal("0.10")) / Decimal(1_000_000)
    assert cost.total == expected == Decimal("0.018")
    # Without the cache every prompt token would have been plain input.
    assert cost.uncached == (24_000 * 2 + 500 * 10) / Decimal(1_000_000)
    assert cost.saved == cost.uncached - cost.total > 0


def test_a_cache_write_without_a_later_read_costs_more_than_no_cache():
    usage = Usage(input_tokens=10, output_tokens=10, cache_creation_input_tokens=5_000)
    assert cost_of(usage, SONNET).saved < 0


def test_long_prompts_are_billed_at_the_long_prompt_rate():
    haiku = Prices("claude-haiku-5-5", Decimal("0.10"), Decimal("0.50"), Decimal("0.125"), Decimal("0.20"), Decimal("0.01"),
                   long_prompt_threshold=100_000, long_prompt_multiplier=Decimal("5"))
    short = Usage(input_tokens=60_000, cache_read_input_tokens=40_000, output_tokens=100)
    long = Usage(input_tokens=60_000, cache_read_input_tokens=40_001, output_tokens=100)
    assert cost_of(short, haiku).total == (60_000 * Decimal("0.10") + 40_000 * Decimal("0.01") + 100 * Decimal("0.50")) / 1_000_000
    assert cost_of(long, haiku).total == (60_000 * Decimal("0.10") + 40_001 * Decimal("0.01") + 100 * Decimal("0.50")) * 5 / 1_000_000


def test_billed_equivalent_weights_reads_and_writes():
    usage = Usage(input_tokens=100, cache_read_input_tokens=1_000, cache_creation_input_tokens=400, cache_creation_1h_input_tokens=100)
    assert billed_equivalent_input(usage) == pytest.approx(100 + 100 + 1.25 * 300 + 2 * 100)


def test_usage_reads_the_cache_write_split_from_the_api():
    usage = Usage()
    usage.update({"input_tokens": 5, "cache_creation_input_tokens": 30, "cache_creation": {"ephemeral_5m_input_tokens": 10, "ephemeral_1h_input_tokens": 20}})
    assert (usage.input_tokens, usage.cache_creation_input_tokens, usage.cache_creation_1h_input_tokens) == (5, 30, 20)
    assert usage.prompt_tokens == 35


def test_seeded_models_have_prices_a_default_and_a_utility_model(db):
    sonnet = LLMModel.objects.get(model_id="claude-sonnet-5-5")
    assert sonnet.is_default and sonnet.input_price == Decimal("2") and sonnet.cache_read_price == Decimal("0.10")
    assert LLMModel.objects.get(is_utility=True).model_id == "claude-haiku-5-5"


def test_usage_record_stores_the_cost_at_the_time(alice):
    model = LLMModel.objects.get(model_id="claude-sonnet-5-5")
    record = services.usage_record(user_id=alice.pk, conversation_id=None, message_id=None, kind="reply",
                                   usage=Usage(input_tokens=1_000_000), prices=Prices.of(model))
    model.input_price = Decimal("99")
    model.save()
    record.refresh_from_db()
    assert record.cost == Decimal("2")


# --- Budgets --------------------------------------------------------------------------------


def _spend(user, dollars: str, when: datetime | None = None) -> None:
    record = UsageRecord.objects.create(user=user, kind="reply", model="claude-sonnet-5-5", cost=Decimal(dollars), uncached_cost=Decimal(dollars))
    if when is not None:
        UsageRecord.objects.filter(pk=record.pk).update(created_at=when)


def test_no_limit_means_no_refusal(alice):
    _spend(alice, "1000")
    budgets.ensure_within_budget(alice.pk)
    assert budgets.status_for(alice.pk).limit is None


def test_over_own_limit_is_refused_with_what_was_used(alice, conversation):
    SpendLimit.objects.create(user=alice, monthly_limit=Decimal("5"))
    _spend(alice, "5.01")
    with pytest.raises(ChatError) as refused:
        services.message_send(conversation=conversation, content="hello")
    assert refused.value.code == "over_budget"
    assert "$5.01 of your $5.00" in refused.value.message
    assert conversation.messages.count() == 0


def test_default_limit_applies_and_a_personal_blank_limit_overrides_it(alice, bob):
    SpendLimit.objects.create(user=None, monthly_limit=Decimal("1"))
    SpendLimit.objects.create(user=bob, monthly_limit=None)
    _spend(alice, "2")
    _spend(bob, "2")
    with pytest.raises(ChatError):
        budgets.ensure_within_budget(alice.pk)
    budgets.ensure_within_budget(bob.pk)


def test_last_months_spend_does_not_count(alice):
    SpendLimit.objects.create(user=alice, monthly_limit=Decimal("1"))
    now = datetime(2026, 11, 25, 12, tzinfo=timezone.utc)
    _spend(alice, "50", when=datetime(2026, 10, 31, 23, 59, tzinfo=timezone.utc))
    _spend(alice, "0.25", when=datetime(2026, 11, 1, 0, 0, tzinfo=timezone.utc))
    status = budgets.status_for(alice.pk, now=now)
    assert status.spent == Decimal("0.25") and not status.exhausted
    assert status.resets_at == datetime(2026, 12, 1, tzinfo=timezone.utc)


def test_there_is_only_one_default_spend_limit(db):
    from django.db import IntegrityError, transaction

    SpendLimit.objects.create(user=None, monthly_limit=Decimal("1"))
    with pytest.raises(IntegrityError), transaction.atomic():
        SpendLimit.objects.create(user=None, monthly_limit=Decimal("2"))
