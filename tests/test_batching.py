"""Group commit: a burst of sends (or of replies ending) stored together, each with its own outcome."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import SpendLimit
from conversations import services
from conversations.errors import ChatError
from conversations.models import Conversation, Message, UsageRecord
from conversations.hub import Hub
from conversations.services import SendRequest

pytestmark = pytest.mark.django_db


def _finished(conversation: Conversation, content: str = "answer") -> None:
    Message.objects.filter(conversation=conversation, status=Message.Status.STREAMING).update(status=Message.Status.COMPLETE, content=content)


def test_each_send_of_a_batch_gets_its_own_outcome(alice, bob, settings):
    settings.CHATSITE_MAX_INPUT_CHARS = 50
    # (Spend limits are read once per few seconds: set bob's before anything reads them.)
    SpendLimit.objects.create(user=bob, monthly_limit=Decimal("1.00"))
    UsageRecord.objects.create(user=bob, kind=UsageRecord.Kind.REPLY, model="m", cost=Decimal("1.50"))
    fresh = services.conversation_create(owner=alice)
    ongoing = services.conversation_create(owner=alice)
    services.message_send(conversation=ongoing, content="earlier question")
    _finished(ongoing, "earlier answer")
    streaming = services.conversation_create(owner=alice)
    services.message_send(conversation=streaming, content="still being answered")
    deleted = services.conversation_create(owner=alice)
    Conversation.objects.filter(pk=deleted.pk).update(deleted_at=timezone.now())
    broke = services.conversation_create(owner=bob)
    twice = services.conversation_create(owner=alice)

    results = services.message_send_many([
        SendRequest(conversation=fresh, content="Hello there"),
        SendRequest(conversation=ongoing, content="a follow-up"),
        SendRequest(conversation=streaming, content="impatient"),
        SendRequest(conversation=deleted, content="into the void"),
        SendRequest(conversation=fresh, content=""),
        SendRequest(conversation=fresh, content="x" * 51),
        SendRequest(conversation=broke, content="on credit"),
        SendRequest(conversation=twice, content="first tab"),
        SendRequest(conversation=twice, content="second tab"),
    ])

    codes = [r.code if isinstance(r, ChatError) else "ok" for r in results]
    assert codes == ["ok", "ok", "busy", "not_found", "empty", "too_long", "over_budget", "ok", "busy"]
    for result, conversation, text in ((results[0], fresh, "Hello there"), (results[1], ongoing, "a follow-up"), (results[7], twice, "first tab")):
        user_message, reply, spec = result
        conversation.refresh_from_db()
        assert (user_message.content, user_message.role, reply.parent_id, reply.status) == (text, "user", user_message.pk, Message.Status.STREAMING)
        assert conversation.current_leaf_id == reply.pk and spec.message_id == reply.pk
        assert Message.objects.get(pk=reply.pk).generation_id == spec.generation_id
    # The follow-up continues its thread; Claude gets the whole of it.
    user_message, _, spec = results[1]
    assert Message.objects.get(pk=user_message.pk).parent.content == "earlier answer"
    assert [m["content"] for m in spec.messages] == ["earlier question", "earlier answer", "a follow-up"]
    assert Conversation.objects.get(pk=fresh.pk).title == "Hello there"
    # Nothing stored for the refused sends.
    assert Message.objects.filter(conversation=streaming).count() == 2
    assert not Message.objects.filter(conversation__in=[deleted, broke]).exists()
    assert Message.objects.filter(conversation=twice, role="user").count() == 1


def test_a_batch_costs_the_same_statements_for_2_sends_as_for_20(alice):
    """(Larger batches split their INSERTs where the database caps parameters: SQLite, 999.)"""
    def statements(n: int) -> int:
        conversations = [services.conversation_create(owner=alice) for _ in range(n)]
        with CaptureQueriesContext(connection) as queries:
            results = services.message_send_many([SendRequest(conversation=c, content=f"q{i}") for i, c in enumerate(conversations)])
        assert not any(isinstance(r, ChatError) for r in results)
        return len(queries)

    statements(1)  # (loads the models and spend limits kept per process)
    assert statements(20) == statements(2) <= 7


@pytest.mark.django_db(transaction=True)
async def test_sends_arriving_together_are_stored_in_few_batches(alice):
    conversations = [await sync_to_async(services.conversation_create)(owner=alice) for _ in range(30)]
    batcher = Hub().sends
    results = await asyncio.gather(*(batcher.submit(SendRequest(conversation=c, content=f"burst {i}")) for i, c in enumerate(conversations)))
    assert [spec.conversation_id for _, _, spec in results] == [c.pk for c in conversations]
    assert batcher.batches <= 4  # the first one or two alone (one per DB thread), then everything that arrived meanwhile
    assert await sync_to_async(Message.objects.filter(conversation__in=conversations, role="user").count)() == 30
    with pytest.raises(ChatError) as refused:
        await batcher.submit(SendRequest(conversation=conversations[0], content="again"))
    assert refused.value.code == "busy"


@pytest.mark.django_db(transaction=True)
async def test_a_failing_batch_is_retried_send_by_send(alice, monkeypatch):
    conversations = [await sync_to_async(services.conversation_create)(owner=alice) for _ in range(3)]
    real = services.message_send_many

    def fails_in_batches(requests):
        if len(requests) > 1:
            raise RuntimeError("a database hiccup")
        if requests[0].content == "poison":
            raise RuntimeError("this one really fails")
        return real(requests)

    monkeypatch.setattr(services, "message_send_many", fails_in_batches)
    batcher = Hub().sends
    outcomes = await asyncio.gather(
        *(batcher.submit(SendRequest(conversation=c, content=text)) for c, text in zip(conversations, ["one", "poison", "three"])),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], RuntimeError)
    assert [o[0].content for i, o in enumerate(outcomes) if i != 1] == ["one", "three"]


def _spec_and_reply(owner, content: str):
    conversation = services.conversation_create(owner=owner)
    user_message, reply, spec = services.message_send(conversation=conversation, content=content)
    return conversation, reply, spec


def _finish(spec, content: str, usage) -> services.Finish:
    return services.Finish(
        message_id=spec.message_id, conversation_id=spec.conversation_id, generation_id=spec.generation_id,
        content=content, status=Message.Status.COMPLETE, usage=usage, stop_reason="end_turn",
        owner_id=spec.owner_id, prices=spec.prices, summary_id=None,
    )


def test_replies_ending_together_are_written_together_each_as_if_alone(alice):
    from conversations.llm import Usage

    usage = Usage(input_tokens=1200, output_tokens=80, cache_read_input_tokens=3000)
    done_conversation, done, done_spec = _spec_and_reply(alice, "first")
    stale_conversation, stale, stale_spec = _spec_and_reply(alice, "second")
    Message.objects.filter(pk=stale.pk).update(status=Message.Status.COMPLETE, content="finished elsewhere")
    gone_conversation, gone, gone_spec = _spec_and_reply(alice, "third")
    gone_conversation.delete()  # deleted (for good) while Claude was answering

    results = services.generation_finish_many([_finish(s, f"answer {i}", usage) for i, s in enumerate((done_spec, stale_spec, gone_spec))])

    assert results == [True, False, False]
    done.refresh_from_db(), stale.refresh_from_db()
    assert (done.content, done.status, done.input_tokens, done.output_tokens, done.cache_read_input_tokens) == ("answer 0", "complete", 1200, 80, 3000)
    assert done.cost > 0 and done.heartbeat_at is None and done.finished_at is not None
    assert (stale.content, stale.input_tokens) == ("finished elsewhere", 0)
    done_conversation.refresh_from_db()
    assert done_conversation.context_tokens == 1200 + 3000 + 80
    ledger = list(UsageRecord.objects.order_by("id").values_list("message_id", "conversation_id", "input_tokens", "cost"))
    assert ledger == [(done.pk, done_conversation.pk, 1200, done.cost), (None, None, 1200, done.cost)]


def test_finishing_costs_the_same_statements_for_2_replies_as_for_20(alice):
    from conversations.llm import Usage

    def statements(n: int) -> int:
        specs = [_spec_and_reply(alice, f"q{i}")[2] for i in range(n)]
        with CaptureQueriesContext(connection) as queries:
            assert services.generation_finish_many([_finish(s, "a", Usage(input_tokens=10, output_tokens=5)) for s in specs]) == [True] * n
        return len(queries)

    assert statements(20) == statements(2) <= 6


@pytest.mark.django_db(transaction=True)
async def test_ends_arriving_together_are_stored_in_few_batches(alice):
    from conversations.llm import Usage
    from conversations.runner import Ending

    specs = [(await sync_to_async(_spec_and_reply)(alice, f"q{i}"))[2] for i in range(20)]
    batcher = Hub().endings
    totals = await asyncio.gather(*(
        batcher.submit(Ending(spec=s, content=f"a{i}", status="complete", usage=Usage(input_tokens=10, output_tokens=i + 1), stop_reason="end_turn", error_code="", error=""))
        for i, s in enumerate(specs)
    ))
    assert [t["output_tokens"] for t in totals] == list(range(1, 21))
    assert batcher.batches <= 2
    stored = await sync_to_async(lambda: list(Message.objects.filter(pk__in=[s.message_id for s in specs]).order_by("id").values_list("content", "status")))()
    assert stored == [(f"a{i}", "complete") for i in range(20)]


def test_a_send_refused_after_reading_its_thread_stores_nothing_and_spares_the_others(alice):
    """A model turned off by an administrator is found while the request is prepared: that
    send is refused before anything of the batch is stored, and the rest of the batch goes on."""
    from conversations import modelcache
    from conversations.models import LLMModel

    ok = services.conversation_create(owner=alice)
    off = services.conversation_create(owner=alice, model="claude-opus-5-5")
    LLMModel.objects.filter(model_id="claude-opus-5-5").update(enabled=False)
    modelcache.clear()
    results = services.message_send_many([SendRequest(conversation=off, content="hello?"), SendRequest(conversation=ok, content="hello!")])
    assert isinstance(results[0], ChatError) and results[0].code == "model_disabled"
    assert not Message.objects.filter(conversation=off).exists()
    assert Message.objects.filter(conversation=ok).count() == 2


async def test_an_item_submitted_as_the_last_batch_ends_is_not_stranded():
    """A caller woken by its result submits again before the drainer's task has finished."""
    from conversations.asyncdb import background_db
    from conversations.batching import Batcher

    batcher = Batcher(lambda items: [item * 2 for item in items], run=background_db)

    async def again() -> int:
        assert await batcher.submit(1) == 2
        # At once: the first drainer has returned, but its task's done-callbacks have not run.
        return await batcher.submit(2)

    assert await asyncio.wait_for(again(), 5) == 4
    assert await asyncio.wait_for(asyncio.gather(*(batcher.submit(n) for n in range(3, 6))), 5) == [6, 8, 10]
