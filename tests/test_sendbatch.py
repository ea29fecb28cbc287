"""Group commit: a burst of sends stored together, each refused or accepted on its own."""

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
from conversations.sendbatch import SendBatcher
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
    batcher = SendBatcher()
    results = await asyncio.gather(*(batcher.send(SendRequest(conversation=c, content=f"burst {i}")) for i, c in enumerate(conversations)))
    assert [spec.conversation_id for _, _, spec in results] == [c.pk for c in conversations]
    assert batcher.batches <= 4  # the first one or two alone (one per DB thread), then everything that arrived meanwhile
    assert await sync_to_async(Message.objects.filter(conversation__in=conversations, role="user").count)() == 30
    with pytest.raises(ChatError) as refused:
        await batcher.send(SendRequest(conversation=conversations[0], content="again"))
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
    batcher = SendBatcher()
    outcomes = await asyncio.gather(
        *(batcher.send(SendRequest(conversation=c, content=text)) for c, text in zip(conversations, ["one", "poison", "three"])),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], RuntimeError)
    assert [o[0].content for i, o in enumerate(outcomes) if i != 1] == ["one", "three"]
