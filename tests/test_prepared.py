"""Prepared queries: compiled once, same rows and annotations as the queryset they come from."""

from __future__ import annotations

import pytest
from django.db import transaction

from conversations import services
from conversations.models import Conversation, Message, Summary
from conversations.prepared import Prepared

SENTINEL = -7_777_777_777


def test_the_send_reads_match_the_orm(alice):
    conversation = services.conversation_create(owner=alice)
    other = services.conversation_create(owner=alice)
    services.message_send(conversation=conversation, content="first")
    Message.objects.filter(conversation=conversation).update(status=Message.Status.COMPLETE)
    services.message_send(conversation=conversation, content="second")
    services.message_send(conversation=other, content="elsewhere")
    upto = Message.objects.filter(conversation=conversation).order_by("id").first()
    Summary.objects.create(conversation=conversation, upto=upto, text="so far")

    with transaction.atomic():
        locked = services.conversation_lock(conversation)
        assert (locked.pk, locked.title, locked.current_leaf_id, locked.has_summary) == (
            conversation.pk, "first", Conversation.objects.get(pk=conversation.pk).current_leaf_id, True)
        assert services.conversation_lock(other).has_summary is False
    expected = list(Message.objects.filter(conversation=conversation).values_list("pk", "role", "content", "parent_id"))
    assert [(m.pk, m.role, m.content, m.parent_id) for m in services.conversation_messages(conversation.pk)] == expected
    assert len(expected) == 4


def test_a_deleted_conversation_is_not_locked(alice):
    from django.utils import timezone

    from conversations.errors import ChatError

    conversation = services.conversation_create(owner=alice)
    Conversation.objects.filter(pk=conversation.pk).update(deleted_at=timezone.now())
    with transaction.atomic(), pytest.raises(ChatError):
        services.conversation_lock(conversation)


def test_compiled_once_and_sentinels_checked(alice):
    built = []

    def build(pk):
        built.append(pk)
        return Conversation.objects.filter(pk=pk)

    query = Prepared(build, pk=SENTINEL)
    first = services.conversation_create(owner=alice)
    second = services.conversation_create(owner=alice)
    assert [c.pk for c in query(pk=first.pk)] == [first.pk]
    assert [c.pk for c in query(pk=second.pk)] == [second.pk]
    assert built == [SENTINEL]
    with pytest.raises(ValueError, match="sentinel 'pk' appears 0 times"):
        Prepared(lambda pk: Conversation.objects.all(), pk=SENTINEL)()


def test_update_rows_sets_each_rows_own_values_and_nothing_else(alice):
    from datetime import timedelta

    from django.utils import timezone

    from conversations.prepared import update_rows

    a, b, untouched = (services.conversation_create(owner=alice) for _ in range(3))
    when = timezone.now() - timedelta(days=3)
    changed = update_rows(Conversation, {
        a.pk: {"title": "It's \"quoted\"; DROP TABLE x", "current_leaf": None, "updated_at": when},
        b.pk: {"title": "ünïcode ✓", "current_leaf": None, "updated_at": when + timedelta(hours=1)},
    })
    assert sorted(changed) == sorted([a.pk, b.pk])
    a.refresh_from_db(), b.refresh_from_db(), untouched.refresh_from_db()
    assert (a.title, a.updated_at) == ("It's \"quoted\"; DROP TABLE x", when)
    assert (b.title, b.updated_at) == ("ünïcode ✓", when + timedelta(hours=1))
    assert untouched.title == "" and untouched.updated_at > when + timedelta(days=1)
    assert update_rows(Conversation, {}) == []


def test_update_rows_only_where_each_rows_guard_holds(alice):
    from conversations.prepared import update_rows

    conversation = services.conversation_create(owner=alice)
    _, first, _ = services.message_send(conversation=conversation, content="one")
    other = services.conversation_create(owner=alice)
    _, second, _ = services.message_send(conversation=other, content="two")
    _, third, _ = services.message_send(conversation=services.conversation_create(owner=alice), content="three")
    Message.objects.filter(pk=third.pk).update(status=Message.Status.COMPLETE)
    import uuid

    updated = update_rows(
        Message,
        {first.pk: {"content": "A"}, second.pk: {"content": "B"}, third.pk: {"content": "C"}},
        match={"generation_id": {first.pk: first.generation_id, second.pk: uuid.uuid4(), third.pk: third.generation_id}},
        status_in=("status", [Message.Status.STREAMING]),
    )
    assert updated == [first.pk]  # second: another generation; third: no longer streaming
    assert [Message.objects.get(pk=m.pk).content for m in (first, second, third)] == ["A", "", ""]


def test_update_rows_in_chunks_with_values_the_same_for_every_row(alice, django_assert_num_queries):
    from django.utils import timezone

    from conversations.prepared import update_rows

    conversations = [services.conversation_create(owner=alice) for _ in range(5)]
    when = timezone.now()
    with django_assert_num_queries(3):  # 5 rows, 2 per statement
        updated = update_rows(
            Conversation, {c.pk: {"title": f"t{i}"} for i, c in enumerate(conversations)},
            match={"owner": {c.pk: alice.pk for c in conversations}}, same={"updated_at": when}, chunk=2,
        )
    assert sorted(updated) == sorted(c.pk for c in conversations)
    rows = {c.pk: (c.title, c.updated_at) for c in Conversation.objects.filter(pk__in=updated)}
    assert rows == {c.pk: (f"t{i}", when) for i, c in enumerate(conversations)}
    # Only shared values: rows with nothing of their own.
    assert sorted(update_rows(Conversation, {c.pk: {} for c in conversations[:2]}, same={"title": "same"})) == sorted(c.pk for c in conversations[:2])
    assert list(Conversation.objects.filter(title="same").order_by("pk").values_list("pk", flat=True)) == sorted(c.pk for c in conversations[:2])
    with pytest.raises(ValueError):
        update_rows(Conversation, {conversations[0].pk: {}})
