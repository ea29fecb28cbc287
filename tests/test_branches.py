"""Edit and regenerate make branches: every version is kept, the person flips between them, and
Claude always gets the history of the branch on screen."""

from __future__ import annotations

from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import SpendLimit
from conversations import branches, selectors, services
from conversations.errors import ChatError
from conversations.models import Conversation, Message, UsageRecord
from tests.conftest import Socket

pytestmark = pytest.mark.django_db


# --- helpers ---------------------------------------------------------------------------------


def _finish(reply: Message, text: str) -> Message:
    """What the runner does at the end of a reply, without calling Claude."""
    Message.objects.filter(pk=reply.pk).update(status=Message.Status.COMPLETE, content=text)
    reply.refresh_from_db()
    return reply


def _exchange(conversation: Conversation, question: str, answer: str) -> tuple[Message, Message]:
    user_message, reply, _ = services.message_send(conversation=conversation, content=question)
    return user_message, _finish(reply, answer)


def _thread(conversation: Conversation) -> list[Message]:
    conversation.refresh_from_db()
    return selectors.conversation_thread_with_branches(conversation=conversation)


def _contents(thread: list[Message]) -> list[str]:
    return [m.content for m in thread]


def _all_ids(conversation: Conversation) -> set[int]:
    return set(Message.objects.filter(conversation=conversation).values_list("pk", flat=True))


# --- services: edit --------------------------------------------------------------------------


def test_edit_stores_a_sibling_and_starts_a_reply_to_it(alice, conversation):
    q1, r1 = _exchange(conversation, "What is a heap?", "A tree-shaped structure.")
    edited, reply, spec = branches.message_edit(conversation=conversation, message_id=q1.pk, content="What is a binary heap?")

    assert edited.role == Message.Role.USER and edited.parent_id is None and edited.pk != q1.pk
    assert reply.parent_id == edited.pk and reply.status == Message.Status.STREAMING
    assert spec.messages == [{"role": "user", "content": "What is a binary heap?"}]
    conversation.refresh_from_db()
    assert conversation.current_leaf_id == reply.pk
    assert [m.pk for m in _thread(conversation)] == [edited.pk, reply.pk]
    # The first version and its answer are still there, untouched.
    q1.refresh_from_db(), r1.refresh_from_db()
    assert (q1.content, r1.content, r1.parent_id) == ("What is a heap?", "A tree-shaped structure.", q1.pk)
    assert (edited.branch.ids, edited.branch.index) == ((q1.pk, edited.pk), 1)


def test_edit_of_a_later_message_keeps_the_history_above_it(alice, conversation):
    q1, r1 = _exchange(conversation, "one", "answer one")
    q2, r2 = _exchange(conversation, "two", "answer two")
    edited, reply, spec = branches.message_edit(conversation=conversation, message_id=q2.pk, content="two, edited")

    assert edited.parent_id == r1.pk
    assert _contents(_thread(conversation)) == ["one", "answer one", "two, edited", ""]
    assert [m["content"] for m in spec.messages] == ["one", "answer one", "two, edited"]


def test_editing_the_first_message_renames_a_placeholder_title(alice, conversation):
    q1, _ = _exchange(conversation, "Tell me about owls", "Owls are birds.")
    branches.message_edit(conversation=conversation, message_id=q1.pk, content="Tell me about ravens")
    conversation.refresh_from_db()
    assert conversation.title == "Tell me about ravens"
    services.conversation_rename(conversation=conversation, title="My birds")
    _finish(conversation.current_leaf, "Ravens are clever.")
    branches.message_edit(conversation=conversation, message_id=q1.pk, content="Tell me about crows")
    conversation.refresh_from_db()
    assert conversation.title == "My birds"  # a title the person chose is never replaced


@pytest.mark.parametrize("content,code", [("", "empty"), ("   ", "empty"), (None, "empty"), ("x" * 101, "too_long")])
def test_bad_edits_are_refused_and_store_nothing(alice, conversation, settings, content, code):
    settings.CHATSITE_MAX_INPUT_CHARS = 100
    q1, _ = _exchange(conversation, "question", "answer")
    before = _all_ids(conversation)
    with pytest.raises(ChatError) as exc:
        branches.message_edit(conversation=conversation, message_id=q1.pk, content=content)
    assert exc.value.code == code
    assert _all_ids(conversation) == before


def test_only_the_persons_own_messages_in_this_conversation_can_be_edited(alice, bob, conversation):
    q1, r1 = _exchange(conversation, "mine", "a reply")
    bobs = services.conversation_create(owner=bob)
    bq, _ = _exchange(bobs, "bob's question", "bob's answer")
    for message_id in (r1.pk, bq.pk, 10**9):  # a reply, a message of another conversation, nothing
        with pytest.raises(ChatError) as exc:
            branches.message_edit(conversation=conversation, message_id=message_id, content="changed")
        assert exc.value.code == "not_found"
    assert Message.objects.filter(conversation=bobs).count() == 2
    assert _all_ids(conversation) == {q1.pk, r1.pk}


def test_edit_over_the_monthly_budget_stores_nothing(alice, conversation):
    SpendLimit.objects.create(user=alice, monthly_limit=Decimal("1.00"))
    q1, _ = _exchange(conversation, "question", "answer")
    UsageRecord.objects.create(user=alice, kind=UsageRecord.Kind.REPLY, model="m", cost=Decimal("1.50"), uncached_cost=Decimal("1.50"))
    with pytest.raises(ChatError) as exc:
        branches.message_edit(conversation=conversation, message_id=q1.pk, content="again")
    assert exc.value.code == "over_budget"
    assert Message.objects.filter(conversation=conversation).count() == 2


def test_edit_and_switch_are_refused_while_a_reply_streams(alice, conversation):
    q1, r1 = _exchange(conversation, "one", "answer")
    services.reply_regenerate(conversation=conversation, message_id=r1.pk)  # streaming now
    before = _all_ids(conversation)
    for attempt in (
        lambda: branches.message_edit(conversation=conversation, message_id=q1.pk, content="other"),
        lambda: branches.branch_switch(conversation=conversation, message_id=r1.pk),
    ):
        with pytest.raises(ChatError) as exc:
            attempt()
        assert exc.value.code == "busy"
    assert _all_ids(conversation) == before
    assert _thread(conversation)[-1].status == Message.Status.STREAMING  # still the one shown


def test_a_deleted_conversation_takes_no_edits_or_switches(alice, conversation):
    q1, r1 = _exchange(conversation, "one", "answer")
    Conversation.objects.filter(pk=conversation.pk).update(deleted_at=timezone.now())  # in its undo window
    for attempt in (
        lambda: branches.message_edit(conversation=conversation, message_id=q1.pk, content="other"),
        lambda: branches.branch_switch(conversation=conversation, message_id=r1.pk),
    ):
        with pytest.raises(ChatError) as exc:
            attempt()
        assert exc.value.code == "not_found"
    assert _all_ids(conversation) == {q1.pk, r1.pk}


# --- services: switching -----------------------------------------------------------------------


def test_flipping_between_versions_changes_the_visible_thread(alice, conversation):
    q1, r1 = _exchange(conversation, "one", "answer one")
    q2, r2 = _exchange(conversation, "two", "answer two")
    edited, reply, _ = branches.message_edit(conversation=conversation, message_id=q2.pk, content="two b")
    _finish(reply, "answer two b")

    thread = branches.branch_switch(conversation=conversation, message_id=q2.pk)
    assert _contents(thread) == ["one", "answer one", "two", "answer two"]
    assert _contents(_thread(conversation)) == ["one", "answer one", "two", "answer two"]
    assert (thread[2].branch.position, thread[2].branch.count) == (1, 2)

    thread = branches.branch_switch(conversation=conversation, message_id=edited.pk)
    assert _contents(thread) == ["one", "answer one", "two b", "answer two b"]
    assert (thread[2].branch.position, thread[2].branch.count, thread[2].branch.previous_id) == (2, 2, q2.pk)


def test_flipping_back_to_a_version_brings_back_the_conversation_carried_on_from_it(alice, conversation):
    q1, r1 = _exchange(conversation, "one", "first answer")
    r1b, _ = services.reply_regenerate(conversation=conversation, message_id=r1.pk)
    _finish(r1b, "second answer")
    branches.branch_switch(conversation=conversation, message_id=r1.pk)
    q2, r2 = _exchange(conversation, "follow-up on the first", "more")
    q3, r3 = _exchange(conversation, "and another", "even more")

    assert _contents(branches.branch_switch(conversation=conversation, message_id=r1b.pk)) == ["one", "second answer"]
    thread = branches.branch_switch(conversation=conversation, message_id=r1.pk)
    assert _contents(thread) == ["one", "first answer", "follow-up on the first", "more", "and another", "even more"]


def test_switching_to_a_message_already_shown_changes_nothing(alice, conversation):
    q1, r1 = _exchange(conversation, "one", "answer one")
    q2, r2 = _exchange(conversation, "two", "answer two")
    updated = Conversation.objects.get(pk=conversation.pk).updated_at
    thread = branches.branch_switch(conversation=conversation, message_id=q1.pk)
    assert [m.pk for m in thread] == [q1.pk, r1.pk, q2.pk, r2.pk]
    conversation.refresh_from_db()
    assert conversation.current_leaf_id == r2.pk
    assert conversation.updated_at == updated  # looking at a version is not activity (sidebar order)


def test_switch_to_a_message_of_another_conversation_is_not_found(alice, bob, conversation):
    _exchange(conversation, "mine", "reply")
    bobs = services.conversation_create(owner=bob)
    bq, _ = _exchange(bobs, "bob's", "answer")
    with pytest.raises(ChatError) as exc:
        branches.branch_switch(conversation=conversation, message_id=bq.pk)
    assert exc.value.code == "not_found"


def test_sibling_positions_follow_the_order_versions_were_made(alice, conversation):
    q1, r1 = _exchange(conversation, "one", "v1")
    r2, _ = services.reply_regenerate(conversation=conversation, message_id=r1.pk)
    assert (r2.branch.ids, r2.branch.index) == ((r1.pk, r2.pk), 1)
    _finish(r2, "v2")
    r3, _ = services.reply_regenerate(conversation=conversation, message_id=r2.pk)
    _finish(r3, "v3")

    q, r = _thread(conversation)
    assert (q.branch.position, q.branch.count) == (1, 1)
    assert (r.branch.ids, r.branch.position, r.branch.previous_id, r.branch.next_id) == ((r1.pk, r2.pk, r3.pk), 3, r2.pk, None)
    q, r = branches.branch_switch(conversation=conversation, message_id=r2.pk)
    assert (r.pk, r.branch.position, r.branch.previous_id, r.branch.next_id) == (r2.pk, 2, r1.pk, r3.pk)


def test_no_message_is_ever_deleted(alice, conversation):
    seen: set[int] = set()
    q1, r1 = _exchange(conversation, "one", "answer")
    for step in range(3):
        reply, _ = services.reply_regenerate(conversation=conversation, message_id=_thread(conversation)[-1].pk)
        _finish(reply, f"regenerated {step}")
        edited, reply, _ = branches.message_edit(conversation=conversation, message_id=_thread(conversation)[0].pk, content=f"one, take {step}")
        _finish(reply, f"edited {step}")
        branches.branch_switch(conversation=conversation, message_id=q1.pk)
        ids = _all_ids(conversation)
        assert seen <= ids
        seen = ids
    assert len(seen) == 2 + 3 * 3
    assert Message.objects.filter(conversation=conversation, content="answer").exists()


# --- the page ----------------------------------------------------------------------------------


def _branchy(conversation: Conversation) -> None:
    q1, r1 = _exchange(conversation, "one", "answer one")
    for n in range(3):
        reply, _ = services.reply_regenerate(conversation=conversation, message_id=_thread(conversation)[-1].pk)
        _finish(reply, f"answer one, take {n}")
    q2, _ = _exchange(conversation, "two", "answer two")
    for n in range(3):
        _, reply, _ = branches.message_edit(conversation=conversation, message_id=q2.pk, content=f"two, take {n}")
        _finish(reply, "answer")


def _detail_queries(client, conversation: Conversation) -> int:
    url = reverse("conversation_detail", args=[conversation.pk])
    client.get(url)  # warm the per-process caches (models, prices)
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_the_page_shows_versions_and_edit_with_a_bounded_number_of_queries(client, alice):
    client.force_login(alice)
    linear = services.conversation_create(owner=alice)
    for n in range(2):
        _exchange(linear, f"question {n}", f"answer {n}")
    branched = services.conversation_create(owner=alice)
    _branchy(branched)

    assert _detail_queries(client, branched) == _detail_queries(client, linear)
    html = client.get(reverse("conversation_detail", args=[branched.pk])).content.decode()
    assert html.count('class="branch-pos">4/4<') == 2  # the reply (3 retries) and the question (3 edits)
    assert html.count("data-branch-edit") == 2
    q2_versions = Message.objects.filter(conversation=branched, content__startswith="two").order_by("created_at", "id")
    assert f'data-branch-target="{q2_versions[2].pk}"' in html  # ‹ goes to the previous version
    assert 'aria-label="Next version" title="Next version" disabled' in html


def test_other_user_cannot_see_the_versions_of_a_conversation(client, alice, bob):
    conversation = services.conversation_create(owner=alice)
    _branchy(conversation)
    client.force_login(bob)
    assert client.get(reverse("conversation_detail", args=[conversation.pk])).status_code == 404


# --- the websocket -----------------------------------------------------------------------------


async def _exchange_live(llm, sock: Socket, content: str, answer: str, client_id: str) -> dict:
    llm.script([{"text": answer}], match=content)
    created = await sock.send_message(content, client_id=client_id)
    _, end = await sock.follow_to_end(created["reply"]["generation_id"])
    assert end["message"]["status"] == "complete"
    return created


def _request_for(llm, text: str) -> list[dict]:
    """The `messages` Claude was sent for the reply to the message containing `text`."""
    bodies = [r["body"] for r in llm.requests() if text in str(r["body"]["messages"][-1])]
    assert bodies, f"no request ended with {text!r}"
    return [{"role": m["role"], "content": m["content"] if isinstance(m["content"], str) else "".join(b["text"] for b in m["content"])} for m in bodies[-1]["messages"]]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("hub_cleanup")
async def test_claude_gets_only_the_history_of_the_branch_shown(llm, token, alice, conversation):
    sock = Socket(alice, conversation.pk)
    assert (await sock.connect())[0]
    first = await _exchange_live(llm, sock, f"alpha {token}", "first answer", "c1")
    second = await _exchange_live(llm, sock, f"beta {token}", "answer to beta", "c2")

    # Edit the second question: a new version, answered with the history above it only.
    llm.script([{"text": "answer to gamma"}], match=f"gamma {token}")
    await sock.send({"type": "edit", "message_id": second["user_message"]["id"], "content": f"gamma {token}", "client_id": "e1"})
    created = await sock.receive_type("message.created")
    assert created["client_id"] == "e1"
    assert created["user_message"]["text"] == f"gamma {token}"
    assert created["user_message"]["parent_id"] == second["user_message"]["parent_id"]
    assert created["user_message"]["siblings"] == {"ids": [second["user_message"]["id"], created["user_message"]["id"]], "index": 1}
    streamed, end = await sock.follow_to_end(created["reply"]["generation_id"])
    assert streamed == "answer to gamma"
    assert _request_for(llm, f"gamma {token}") == [
        {"role": "user", "content": f"alpha {token}"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": f"gamma {token}"},
    ]

    # Flip back to the first version of the question: its answer is shown again…
    await sock.send({"type": "switch_branch", "message_id": second["user_message"]["id"], "client_id": "s1"})
    frame = await sock.receive_type("thread")
    assert frame["client_id"] == "s1" and frame["conversation_id"] == conversation.pk
    assert [m["id"] for m in frame["messages"]] == [
        first["user_message"]["id"], first["reply"]["id"], second["user_message"]["id"], second["reply"]["id"],
    ]
    assert frame["current_leaf_id"] == second["reply"]["id"]
    assert frame["messages"][2]["siblings"]["index"] == 0 and len(frame["messages"][2]["siblings"]["ids"]) == 2
    assert "answer to beta" in frame["messages"][3]["html"]

    # …and the next question is sent with that branch's history, not the edited one.
    await _exchange_live(llm, sock, f"delta {token}", "answer to delta", "c3")
    history = _request_for(llm, f"delta {token}")
    assert [m["content"] for m in history] == [f"alpha {token}", "first answer", f"beta {token}", "answer to beta", f"delta {token}"]
    assert "gamma" not in str(history)
    await sock.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("hub_cleanup")
async def test_regenerated_reply_frame_says_which_version_it_is(llm, token, alice, conversation):
    sock = Socket(alice, conversation.pk)
    await sock.connect()
    first = await _exchange_live(llm, sock, f"hello {token}", "version one", "c1")
    llm.script([{"text": "version two"}], match=f"hello {token}")
    await sock.send({"type": "regenerate", "message_id": first["reply"]["id"], "client_id": "r1"})
    created = await sock.receive_type("message.created")
    assert created["reply"]["siblings"] == {"ids": [first["reply"]["id"], created["reply"]["id"]], "index": 1}
    streamed, _ = await sock.follow_to_end(created["reply"]["generation_id"])
    assert streamed == "version two"

    await sock.send({"type": "switch_branch", "message_id": first["reply"]["id"], "client_id": "s1"})
    frame = await sock.receive_type("thread")
    assert [m["id"] for m in frame["messages"]] == [first["user_message"]["id"], first["reply"]["id"]]
    assert "version one" in frame["messages"][1]["html"]
    assert frame["messages"][1]["siblings"]["index"] == 0
    await sock.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("hub_cleanup")
async def test_the_persons_other_tabs_follow_edits_and_switches(llm, token, alice, conversation):
    elsewhere = await sync_to_async(services.conversation_create)(owner=alice)
    tab1, tab2, other = Socket(alice, conversation.pk), Socket(alice, conversation.pk), Socket(alice, elsewhere.pk)
    for sock in (tab1, tab2, other):
        await sock.connect()
    first = await _exchange_live(llm, tab1, f"one {token}", "reply one", "c1")
    await tab2.receive_type("generation.end")

    llm.script([{"text": "reply two"}], match=f"two {token}")
    await tab1.send({"type": "edit", "message_id": first["user_message"]["id"], "content": f"two {token}", "client_id": "e1"})
    mine = await tab1.receive_type("message.created")
    theirs = await tab2.receive_type("message.created")
    assert theirs["user_message"] == mine["user_message"] and theirs["user_message"]["siblings"]["index"] == 1
    await tab1.follow_to_end(mine["reply"]["generation_id"])
    streamed, _ = await tab2.follow_to_end(mine["reply"]["generation_id"])
    assert streamed == "reply two"

    await tab1.send({"type": "switch_branch", "message_id": first["user_message"]["id"], "client_id": "s1"})
    await tab1.receive_type("thread")
    followed = await tab2.receive_type("thread")
    assert [m["id"] for m in followed["messages"]] == [first["user_message"]["id"], first["reply"]["id"]]
    await tab1.send({"type": "ping"})
    await tab1.receive_type("pong")
    assert not any(f["type"] == "thread" for f in other.frames)  # another conversation's page
    for sock in (tab1, tab2, other):
        await sock.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("hub_cleanup")
async def test_switch_while_a_reply_streams_is_refused_and_the_reply_stays_shown(llm, token, alice, conversation):
    sock = Socket(alice, conversation.pk)
    await sock.connect()
    first = await _exchange_live(llm, sock, f"one {token}", "done", "c1")
    llm.script([{"text": "slow " * 60, "tps": 40}], match=f"one {token}")
    await sock.send({"type": "regenerate", "message_id": first["reply"]["id"], "client_id": "r1"})
    created = await sock.receive_type("message.created")
    await sock.send({"type": "switch_branch", "message_id": first["reply"]["id"], "client_id": "s1"})
    await sock.send({"type": "edit", "message_id": first["user_message"]["id"], "content": "changed", "client_id": "e1"})
    errors = [await sock.receive_type("error"), await sock.receive_type("error")]
    assert [(e["code"], e["client_id"]) for e in errors] == [("busy", "s1"), ("busy", "e1")]
    _, end = await sock.follow_to_end(created["reply"]["generation_id"])
    assert end["message"]["status"] == "complete"
    conversation = await sync_to_async(Conversation.objects.get)(pk=conversation.pk)
    assert conversation.current_leaf_id == created["reply"]["id"]
    await sock.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("hub_cleanup")
async def test_other_user_cannot_edit_or_switch_someone_elses_messages(llm, token, alice, bob, conversation):
    sock = Socket(alice, conversation.pk)
    await sock.connect()
    first = await _exchange_live(llm, sock, f"private {token}", "secret answer", "c1")
    await sock.close()

    intruder = Socket(bob, conversation.pk)
    assert (await intruder.connect()) == (False, 4404)
    bobs = await sync_to_async(services.conversation_create)(owner=bob)
    intruder = Socket(bob, bobs.pk)
    await intruder.connect()
    await intruder.send({"type": "edit", "message_id": first["user_message"]["id"], "content": "hijacked", "client_id": "e1"})
    await intruder.send({"type": "switch_branch", "message_id": first["reply"]["id"], "client_id": "s1"})
    errors = [await intruder.receive_type("error"), await intruder.receive_type("error")]
    assert [(e["code"], e["client_id"]) for e in errors] == [("not_found", "e1"), ("not_found", "s1")]
    assert not any("secret" in str(f) for f in intruder.frames)
    assert await sync_to_async(Message.objects.filter(content="hijacked").exists)() is False
    assert await sync_to_async(Message.objects.filter(conversation=bobs).count)() == 0
    await intruder.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("hub_cleanup")
async def test_malformed_branch_commands_get_an_error_frame(alice, conversation):
    sock = Socket(alice, conversation.pk)
    await sock.connect()
    await sock.send({"type": "switch_branch", "message_id": "abc"})
    await sock.send({"type": "edit", "message_id": None, "content": "x", "client_id": "e1"})
    errors = [await sock.receive_type("error"), await sock.receive_type("error")]
    assert [e["code"] for e in errors] == ["bad_frame", "bad_frame"]
    await sock.close()
