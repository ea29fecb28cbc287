"""Services and selectors: the rules, without sockets."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from conversations import recovery, selectors, services
from conversations.errors import ChatError
from conversations.llm import Usage
from conversations.models import Message, SystemPrompt

pytestmark = pytest.mark.django_db


def test_send_stores_user_message_and_streaming_reply(alice):
    conversation = services.conversation_create(owner=alice)
    user_message, reply, spec = services.message_send(conversation=conversation, content="Explain  caching\nplease")
    conversation.refresh_from_db()
    assert conversation.title == "Explain caching please"
    assert reply.status == Message.Status.STREAMING and reply.parent == user_message
    assert conversation.current_leaf == reply
    assert spec.messages == [{"role": "user", "content": "Explain  caching\nplease"}]
    assert spec.generation_id == reply.generation_id


def test_send_refused_while_a_reply_streams(alice):
    conversation = services.conversation_create(owner=alice)
    services.message_send(conversation=conversation, content="one")
    with pytest.raises(ChatError) as exc:
        services.message_send(conversation=conversation, content="two")
    assert exc.value.code == "busy"
    assert conversation.messages.filter(role="user").count() == 1


@pytest.mark.parametrize("content,code", [("", "empty"), ("   ", "empty"), (None, "empty"), ("x" * 101, "too_long")])
def test_bad_input_is_refused_with_a_clear_code(alice, settings, content, code):
    settings.CHATSITE_MAX_INPUT_CHARS = 100
    conversation = services.conversation_create(owner=alice)
    with pytest.raises(ChatError) as exc:
        services.message_send(conversation=conversation, content=content)
    assert exc.value.code == code
    assert not conversation.messages.exists()


def test_history_skips_empty_replies_and_merges_same_role_turns(alice):
    conversation = services.conversation_create(owner=alice)
    _, reply, _ = services.message_send(conversation=conversation, content="first")
    services.generation_finish(message_id=reply.pk, generation_id=reply.generation_id, content="", status="error", usage=Usage(), error="x")
    _, _, spec = services.message_send(conversation=conversation, content="second")
    assert spec.messages == [{"role": "user", "content": "first\n\nsecond"}]


def test_regenerate_branches_from_the_same_question_with_a_new_generation_id(alice):
    conversation = services.conversation_create(owner=alice)
    user_message, reply, _ = services.message_send(conversation=conversation, content="q")
    services.generation_finish(message_id=reply.pk, generation_id=reply.generation_id, content="a1", status="complete", usage=Usage())
    new_reply, spec = services.reply_regenerate(conversation=conversation, message_id=reply.pk)
    assert new_reply.parent == user_message and new_reply.generation_id != reply.generation_id
    conversation.refresh_from_db()
    assert [m.pk for m in selectors.conversation_thread(conversation=conversation)] == [user_message.pk, new_reply.pk]
    assert spec.messages == [{"role": "user", "content": "q"}]


def test_finish_is_written_once_and_guarded_by_generation_id(alice):
    conversation = services.conversation_create(owner=alice)
    _, reply, _ = services.message_send(conversation=conversation, content="q")
    usage = Usage(input_tokens=10, output_tokens=5, cache_creation_input_tokens=3, cache_read_input_tokens=2)
    other_gid = Message.new_generation_id()
    assert not services.generation_finish(message_id=reply.pk, generation_id=other_gid, content="wrong", status="complete", usage=usage)
    assert services.generation_finish(message_id=reply.pk, generation_id=reply.generation_id, content="right", status="complete", usage=usage)
    assert not services.generation_finish(message_id=reply.pk, generation_id=reply.generation_id, content="again", status="complete", usage=usage)
    reply.refresh_from_db()
    assert (reply.content, reply.input_tokens, reply.cache_creation_input_tokens, reply.cache_read_input_tokens) == ("right", 10, 3, 2)


def test_checkpoint_never_overwrites_a_finished_reply(alice):
    conversation = services.conversation_create(owner=alice)
    _, reply, _ = services.message_send(conversation=conversation, content="q")
    services.generation_checkpoint(items=[(reply.pk, reply.generation_id, "partial")], runner="r1")
    reply.refresh_from_db()
    assert reply.content == "partial" and reply.runner == "r1"
    services.generation_finish(message_id=reply.pk, generation_id=reply.generation_id, content="final", status="complete", usage=Usage())
    services.generation_checkpoint(items=[(reply.pk, reply.generation_id, "late partial")], runner="r1")
    reply.refresh_from_db()
    assert reply.content == "final"


def test_one_checkpoint_writes_many_replies_each_guarded_by_its_generation(alice, django_assert_max_num_queries):
    replies = []
    for n in range(4):
        conversation = services.conversation_create(owner=alice)
        replies.append(services.message_send(conversation=conversation, content=f"q{n}")[1])
    changed, unchanged, finished, regenerated = replies
    Message.objects.filter(pk=unchanged.pk).update(content="kept", heartbeat_at=None)
    services.generation_finish(message_id=finished.pk, generation_id=finished.generation_id, content="final", status="complete", usage=Usage())
    items = [
        (changed.pk, changed.generation_id, "partial 1"),
        (unchanged.pk, unchanged.generation_id, None),
        (finished.pk, finished.generation_id, "late"),
        (regenerated.pk, uuid.uuid4(), "another generation's text"),
    ]
    with django_assert_max_num_queries(4):  # savepoint/transaction + two UPDATEs
        services.generation_checkpoint(items=items, runner="r2")
    rows = {m.pk: m for m in Message.objects.filter(pk__in=[r.pk for r in replies])}
    assert (rows[changed.pk].content, rows[changed.pk].runner) == ("partial 1", "r2") and rows[changed.pk].heartbeat_at
    assert (rows[unchanged.pk].content, rows[unchanged.pk].runner) == ("kept", "r2") and rows[unchanged.pk].heartbeat_at
    assert rows[finished.pk].content == "final" and rows[finished.pk].status == Message.Status.COMPLETE
    assert rows[regenerated.pk].content == "" and rows[regenerated.pk].runner != "r2"


def test_reaper_marks_only_stale_streaming_replies_and_keeps_their_text(alice):
    conversation = services.conversation_create(owner=alice)
    _, stale, _ = services.message_send(conversation=conversation, content="q")
    services.generation_checkpoint(items=[(stale.pk, stale.generation_id, "kept text")], runner="dead")
    Message.objects.filter(pk=stale.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=120))
    other = services.conversation_create(owner=alice)
    _, fresh, _ = services.message_send(conversation=other, content="q2")
    ends = recovery.reap_stale(stale_after=30)
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.status == Message.Status.INTERRUPTED and stale.content == "kept text" and stale.error
    assert fresh.status == Message.Status.STREAMING
    assert [e["generation_id"] for e in ends] == [str(stale.generation_id)]
    assert ends[0]["owner_id"] == alice.pk and ends[0]["message"]["status"] == "interrupted"


def test_thread_follows_current_leaf(alice):
    conversation = services.conversation_create(owner=alice)
    u1 = Message.objects.create(conversation=conversation, role="user", content="1")
    a1 = Message.objects.create(conversation=conversation, role="assistant", content="a", parent=u1)
    a2 = Message.objects.create(conversation=conversation, role="assistant", content="b", parent=u1)
    conversation.current_leaf = a1
    conversation.save()
    assert selectors.conversation_thread(conversation=conversation) == [u1, a1]
    conversation.current_leaf = a2
    assert selectors.conversation_thread(conversation=conversation) == [u1, a2]


def test_default_preset_snapshot_is_used_for_new_conversations(alice):
    SystemPrompt.objects.create(name="B", text="not default")
    SystemPrompt.objects.create(name="A", text="the default", is_default=True)
    conversation = services.conversation_create(owner=alice)
    assert conversation.system_prompt == "the default"
    SystemPrompt.objects.filter(name="A").update(text="edited later")
    conversation.refresh_from_db()
    assert conversation.system_prompt == "the default"


def test_conversation_get_for_user_is_owner_scoped(alice, bob):
    from django.http import Http404

    conversation = services.conversation_create(owner=alice)
    assert selectors.conversation_get_for_user(user=alice, conversation_id=conversation.pk) == conversation
    with pytest.raises(Http404):
        selectors.conversation_get_for_user(user=bob, conversation_id=conversation.pk)


def test_a_reply_of_a_deleted_conversation_still_counts_against_the_budget(alice):
    from conversations.models import UsageRecord

    conversation = services.conversation_create(owner=alice)
    _, reply, spec = services.message_send(conversation=conversation, content="q")
    conversation.delete()
    usage = Usage(input_tokens=1_000, output_tokens=500)
    assert not services.generation_finish(
        message_id=reply.pk, conversation_id=spec.conversation_id, generation_id=reply.generation_id, content="partial",
        status="complete", usage=usage, owner_id=alice.pk, prices=spec.prices,
    )
    record = UsageRecord.objects.get(user=alice)
    assert record.conversation_id is None and record.cost > 0


def test_errors_survive_pickling_as_celery_stores_them():
    """Celery pickles a failed task's exception; an unpicklable one becomes a wrapper that
    loses its code and retry hint."""
    import pickle

    from conversations.llm import LLMError

    err = pickle.loads(pickle.dumps(LLMError("overloaded", "Busy.", retryable=True, retry_after=2.5, status=529)))
    assert (type(err), err.code, err.message, err.retryable, err.retry_after, err.status) == (LLMError, "overloaded", "Busy.", True, 2.5, 529)
    chat = pickle.loads(pickle.dumps(ChatError("busy", "Wait.")))
    assert (type(chat), chat.code, chat.message, str(chat)) == (ChatError, "busy", "Wait.", "Wait.")
