"""Background work of the cost features with a real Celery worker on the real Redis: titles,
compaction (idempotent, redelivered after a crash), and the requests Claude gets (trimmed to
the window, cache breakpoints, budgets, stored costs). The real SDK talks to the fake over HTTP.

Replies run through the real runner (`runner.run_generation` on a hub), exactly as a socket
would start them; the worker reads the same test database (rows are committed: every test is
transactional). Scripted replies are routed by a marker in the last user turn of a request: a
title request carries the first message and reply, a summary request the folded transcript.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from accounts.models import SpendLimit
from conversations import compaction, modelcache, prompting, runner, selectors, services, tasks, titles
from conversations.errors import ChatError
from conversations.hub import Hub
from conversations.llm import Usage
from conversations.models import Conversation, LLMModel, Message, Summary, SystemPrompt, UsageRecord
from conversations.pricing import Prices, cost_of
from fakeanthropic.server import count_text_tokens
from tests.celeryworker import wait_for


def timezone_now():
    from django.utils import timezone

    return timezone.now()

# Compaction starts at 3,000 tokens (and folds down to 1,500) so a few dozen short messages
# make a "long" conversation. The worker and this process must agree: see _same_settings.
CELERY_WORKER_SETTINGS = {"CHATSITE_CONTEXT_BUDGET_TOKENS": "3000"}
SONNET = "claude-sonnet-5-5"
HAIKU = "claude-haiku-5-5"  # the seeded utility model: titles and summaries
MILLION = Decimal(1_000_000)

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _same_settings(settings):
    for name, value in CELERY_WORKER_SETTINGS.items():
        setattr(settings, name, type(getattr(settings, name))(value))
    # Users are created per test here (transactional tests flush them); PBKDF2 costs ~0.7 s each.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def worker(celery_worker, _model_catalog):
    """Every test here may enqueue work; it is all done before the test's rows are flushed."""
    celery_worker.start()  # a test may have killed it
    yield celery_worker
    celery_worker.wait_drained()


# --- helpers ---------------------------------------------------------------------------------


def run_reply(spec: services.GenerationSpec) -> Message:
    """Run one generation through the real runner (SDK → fake → finish → follow-ups)."""

    async def go() -> None:
        hub = Hub()
        run = hub.start(spec, runner.run_generation)
        try:
            await asyncio.wait_for(asyncio.shield(run.task), timeout=20)
        finally:
            await hub.close()

    async_to_sync(go)()
    return Message.objects.get(pk=spec.message_id)


def converse(conversation: Conversation, content: str) -> Message:
    """Send a message and let Claude (the fake) answer it; return the stored reply."""
    _, _, spec = services.message_send(conversation=conversation, content=content)
    return run_reply(spec)


def titled_conversation(owner, **kwargs) -> Conversation:
    """A conversation the person already named: no title task, no title request."""
    conversation = services.conversation_create(owner=owner, **kwargs)
    return services.conversation_rename(conversation=conversation, title="Named by the person")


def _sized(prefix: str, chars: int) -> str:
    words = " ".join(f"w{i}" for i in range(chars // 3))
    return (prefix + " " + words)[:chars]


def long_conversation(owner, *, exchanges: int, chars: int, marker: str) -> tuple[Conversation, list[Message]]:
    """`exchanges` finished question/answer pairs of `chars` characters each; question 1 carries
    `marker` (so a summary request can be scripted; the title request never sees it)."""
    conversation = titled_conversation(owner)
    parent = None
    for i in range(exchanges):
        tag = f" {marker}" if i == 1 else ""
        question = Message.objects.create(conversation=conversation, parent=parent, role=Message.Role.USER, content=_sized(f"Question {i}:{tag}", chars))
        parent = Message.objects.create(
            conversation=conversation, parent=question, role=Message.Role.ASSISTANT, content=_sized(f"Answer {i}:", chars), model=conversation.model
        )
    thread = selectors.conversation_thread(conversation=conversation)
    conversation.current_leaf = parent
    # What the last reply's usage said: the whole thread, as the fake counts for the model.
    conversation.context_tokens = sum(count_text_tokens(m.content, conversation.model) for m in thread)
    conversation.save(update_fields=["current_leaf", "context_tokens"])
    return conversation, thread


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content)


def last_user_text(body: dict) -> str:
    return next((text_of(m["content"]) for m in reversed(body["messages"]) if m["role"] == "user"), "")


def bodies(fake, containing: str, *, system: str | None = None) -> list[dict]:
    """Request bodies the fake received whose last user turn contains `containing`."""
    found = [r["body"] for r in fake.requests() if isinstance(r.get("body"), dict) and containing in last_user_text(r["body"])]
    return [b for b in found if system is None or b.get("system") == system]


def cache_controls(body: dict) -> list[tuple[str, dict]]:
    """Every cache_control in a request: (where, value)."""
    found = [("top", body["cache_control"])] if body.get("cache_control") else []
    system = body.get("system")
    if isinstance(system, list):
        found += [(f"system.{i}", b["cache_control"]) for i, b in enumerate(system) if "cache_control" in b]
    for i, message in enumerate(body["messages"]):
        if isinstance(message["content"], list):
            found += [(f"messages.{i}.{j}", b["cache_control"]) for j, b in enumerate(message["content"]) if "cache_control" in b]
    return found


def expected_cost(message_or_record, *, input_price: str, output_price: str, write_5m: str, write_1h: str, read: str) -> Decimal:
    """The bill, worked out here from stored token counts and published prices: each cache
    token at its own rate, never again as input."""
    if isinstance(message_or_record, Message):
        m = message_or_record
        one_hour = m.cache_creation_1h_input_tokens
        counts = (m.input_tokens, m.output_tokens, m.cache_creation_input_tokens - one_hour, one_hour, m.cache_read_input_tokens)
    else:
        r = message_or_record
        counts = (r.input_tokens, r.output_tokens, r.cache_write_5m_tokens, r.cache_write_1h_tokens, r.cache_read_tokens)
    prices = [Decimal(p) for p in (input_price, output_price, write_5m, write_1h, read)]
    return (sum(n * p for n, p in zip(counts, prices)) / MILLION).quantize(Decimal("1e-8"))


SONNET_PRICES = {"input_price": "2", "output_price": "10", "write_5m": "2.50", "write_1h": "4", "read": "0.10"}


# --- titles ----------------------------------------------------------------------------------


def test_the_worker_names_a_conversation_after_its_first_reply(worker, llm, token, alice):
    conversation = services.conversation_create(owner=alice)
    llm.script({"text": f"Paris has been France's capital for centuries. {token}-answer"}, match=f"capital {token}")
    llm.script({"text": "  \"French Capital History.\"\n"}, match=f"{token}-answer")
    reply = converse(conversation, f"What is the capital of France? capital {token}")
    assert reply.status == Message.Status.COMPLETE

    named = wait_for(
        lambda: Conversation.objects.filter(pk=conversation.pk, title_source=Conversation.TitleSource.AUTO).first(),
        timeout=10, what="the automatic title",
    )
    assert named.title == "French Capital History"
    [request] = bodies(llm, f"{token}-answer", system=titles.TITLER_SYSTEM)
    assert request["model"] == HAIKU and f"capital {token}" in last_user_text(request)
    record = wait_for(lambda: UsageRecord.objects.filter(conversation=conversation, kind=UsageRecord.Kind.TITLE).first(), timeout=5, what="the title's usage")
    assert record.user_id == alice.pk and record.model == HAIKU and record.message_id is None
    assert record.input_tokens > 0 and record.cost > 0


def test_titles_queued_together_are_fanned_out_by_the_worker(worker, llm, token, alice):
    from conversations import queueing

    conversations = []
    for n in range(3):
        conversation = services.conversation_create(owner=alice)
        llm.script({"text": f"Title number {n}"}, match=f"{token}-a{n}")
        _, _, spec = services.message_send(conversation=conversation, content=f"q{n} {token}")
        # The reply ends without its own follow-up, so only the batch below can name it.
        services.generation_finish(message_id=spec.message_id, generation_id=spec.generation_id,
                                   content=f"Answer {n}. {token}-a{n}", status="complete", usage=Usage())
        conversations.append(conversation)
    fanned = worker.finished_tasks("title_conversations")
    queueing.publish([(queueing.TITLE, c.pk) for c in conversations] + [(queueing.TITLE, conversations[0].pk)])

    wait_for(lambda: worker.finished_tasks("title_conversations") > fanned, timeout=10, what="the fan-out task")
    for n, conversation in enumerate(conversations):
        named = wait_for(
            lambda: Conversation.objects.filter(pk=conversation.pk, title_source=Conversation.TitleSource.AUTO).first(),
            timeout=10, what=f"title {n}",
        )
        assert named.title == f"Title number {n}"
    assert len(bodies(llm, f"{token}-a0", system=titles.TITLER_SYSTEM)) == 1  # the repeated id was queued once


def test_a_title_the_person_set_while_the_reply_streamed_is_left_alone(worker, llm, token, alice):
    conversation = services.conversation_create(owner=alice)
    llm.script({"text": f"Sure. {token}-answer"}, match=f"hello {token}")
    llm.script({"text": "Auto Title"}, match=f"{token}-answer")
    _, _, spec = services.message_send(conversation=conversation, content=f"hello {token}")
    services.conversation_rename(conversation=conversation, title="Trip planning")
    finished = worker.finished_tasks("title_conversation")
    run_reply(spec)  # the reply was sent with a placeholder title: its follow-up queues a title task

    wait_for(lambda: worker.finished_tasks("title_conversation") > finished, timeout=10, what="the title task")
    conversation.refresh_from_db()
    assert (conversation.title, conversation.title_source) == ("Trip planning", Conversation.TitleSource.USER)
    assert bodies(llm, f"{token}-answer", system=titles.TITLER_SYSTEM) == []  # not even asked
    assert not UsageRecord.objects.filter(conversation=conversation, kind=UsageRecord.Kind.TITLE).exists()


def test_a_rename_landing_while_the_title_call_is_in_flight_wins(worker, llm, token, alice):
    conversation = services.conversation_create(owner=alice)
    llm.script({"text": f"Sure. {token}-answer"}, match=f"hello {token}")
    llm.script({"text": "Auto Title", "first_byte_delay_ms": 1500}, match=f"{token}-answer")
    finished = worker.finished_tasks("title_conversation")
    converse(conversation, f"hello {token}")

    wait_for(lambda: bodies(llm, f"{token}-answer", system=titles.TITLER_SYSTEM), timeout=10, what="the title request")
    services.conversation_rename(conversation=conversation, title="My own title")
    wait_for(lambda: worker.finished_tasks("title_conversation") > finished, timeout=10, what="the title task")

    conversation.refresh_from_db()
    assert (conversation.title, conversation.title_source) == ("My own title", Conversation.TitleSource.USER)
    # The call was made and is paid for, but its answer lost to the person's title.
    assert UsageRecord.objects.filter(conversation=conversation, kind=UsageRecord.Kind.TITLE).count() == 1


# --- compaction ------------------------------------------------------------------------------


def test_the_worker_folds_the_oldest_turns_into_a_summary_and_the_next_request_uses_it(worker, llm, token, alice):
    conversation, thread = long_conversation(alice, exchanges=16, chars=400, marker=f"sum-{token}")
    assert compaction.should_compact(conversation=conversation, model=LLMModel.objects.get(model_id=SONNET), summary=None)
    llm.script({"text": "The person asked sixteen numbered questions; Claude answered each."}, match=f"sum-{token}")

    result = tasks.compact_conversation.delay(conversation.pk)
    worker.wait_for_task(result.id)

    summary = Summary.objects.get(conversation=conversation)
    cut = next(i for i, m in enumerate(thread) if m.pk == summary.upto_id)
    folded, kept = thread[: cut + 1], thread[cut + 1 :]
    assert summary.upto.role == Message.Role.ASSISTANT and summary.covered_messages == len(folded)
    assert len(kept) >= 2, "the newest exchange is never folded"
    assert summary.text == "The person asked sixteen numbered questions; Claude answered each." and summary.model == HAIKU
    # The summariser saw exactly the oldest turns, in order.
    [request] = bodies(llm, f"sum-{token}", system=compaction.SUMMARISER_SYSTEM)
    transcript = last_user_text(request)
    assert request["model"] == HAIKU
    assert all(m.content.strip() in transcript for m in folded)
    assert not any(m.content.split(":")[0] + ":" in transcript for m in kept)
    # After the cut the context is below the high-water mark again (as the fake counts).
    assert sum(count_text_tokens(m.content, SONNET) for m in kept) < compaction.thresholds(LLMModel.objects.get(model_id=SONNET))[0]
    record = UsageRecord.objects.get(conversation=conversation, kind=UsageRecord.Kind.SUMMARY)
    assert record.user_id == alice.pk and record.model == HAIKU and record.cost > 0

    llm.script({"text": "Carrying on."}, match=f"newest {token}")
    reply = converse(conversation, f"newest {token}")
    assert reply.status == Message.Status.COMPLETE and reply.context_note == ""
    [body] = bodies(llm, f"newest {token}")
    assert prompting.SUMMARY_INTRO + summary.text in [block["text"] for block in body["system"]]
    assert [text_of(m["content"]) for m in body["messages"]] == [m.content for m in kept] + [f"newest {token}"]
    # Nothing was deleted: every message is stored and on the person's thread.
    conversation.refresh_from_db()
    assert [m.pk for m in selectors.conversation_thread(conversation=conversation)][: len(thread)] == [m.pk for m in thread]
    assert Message.objects.filter(conversation=conversation).count() == len(thread) + 2
    # The reply's usage now describes the summarised layout, so no new step is due.
    assert conversation.context_summary_id == summary.pk
    assert not compaction.should_compact(conversation=conversation, model=LLMModel.objects.get(model_id=SONNET), summary=summary)


def test_compaction_makes_one_summary_per_cut_however_often_it_runs(worker, llm, token, alice):
    first, _ = long_conversation(alice, exchanges=16, chars=400, marker=f"a-{token}")
    llm.script({"text": "Summary A"}, match=f"a-{token}")
    made = compaction.compact(first.pk)
    again = compaction.compact(first.pk)
    assert made is not None and again in (None, made)
    assert Summary.objects.filter(conversation=first).count() == 1
    assert len(bodies(llm, f"a-{token}", system=compaction.SUMMARISER_SYSTEM)) == 1

    second, _ = long_conversation(alice, exchanges=16, chars=400, marker=f"b-{token}")
    llm.script({"text": "Summary B", "first_byte_delay_ms": 1000}, match=f"b-{token}")
    one = tasks.compact_conversation.delay(second.pk)
    two = tasks.compact_conversation.delay(second.pk)
    wait_for(lambda: bodies(llm, f"b-{token}"), timeout=10, what="the summary request")
    assert compaction.compact(second.pk) is None, "the worker holds the claim"
    worker.wait_for_task(one.id)
    worker.wait_for_task(two.id)
    assert Summary.objects.filter(conversation=second).count() == 1
    assert len(bodies(llm, f"b-{token}", system=compaction.SUMMARISER_SYSTEM)) == 1
    assert UsageRecord.objects.filter(conversation=second, kind=UsageRecord.Kind.SUMMARY).count() == 1
    assert Conversation.objects.get(pk=second.pk).compaction_claimed_at is None


def test_a_worker_whose_claim_went_stale_leaves_the_new_claim_alone(worker, alice, settings):
    settings.CHATSITE_COMPACTION_CLAIM_SECONDS = 0  # every claim is stale at once
    conversation = titled_conversation(alice)
    slow = compaction.claim(conversation.pk)
    taken_over = compaction.claim(conversation.pk)
    assert slow is not None and taken_over is not None and taken_over.holder != slow.holder
    assert not compaction.renew(slow), "the slow worker learns it lost the claim"
    compaction.release(slow)  # the slow worker finishes
    assert Conversation.objects.get(pk=conversation.pk).compaction_claimed_by == taken_over.holder
    compaction.release(taken_over)
    assert Conversation.objects.get(pk=conversation.pk).compaction_claimed_at is None


def test_a_claim_whose_holder_process_is_gone_is_taken_over_at_once(worker, alice, settings):
    import socket
    import subprocess
    import sys

    settings.CHATSITE_COMPACTION_CLAIM_SECONDS = 3600  # never stale here: only the holder's death frees it
    conversation = titled_conversation(alice)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        for holder, free in ((f"{socket.gethostname()}:{alive.pid}:x", False), (f"other-host:{dead.pid}:x", False),
                             (f"{socket.gethostname()}:{dead.pid}:x", True)):
            Conversation.objects.filter(pk=conversation.pk).update(compaction_claimed_at=timezone_now(), compaction_claimed_by=holder)
            assert (compaction.claim(conversation.pk) is not None) is free, holder
    finally:
        alive.kill()
        alive.wait()


def test_a_compaction_whose_worker_is_killed_is_redelivered_and_done_once(worker, llm, token, alice, settings):
    """The worker's claims last CHATSITE_COMPACTION_CLAIM_SECONDS (300 s here): the redelivered
    task takes over because it can tell the holder's process is gone, not by waiting."""
    conversation, _ = long_conversation(alice, exchanges=16, chars=400, marker=f"kill-{token}")
    llm.script([{"text": "never sent", "first_byte_delay_ms": 60_000}, {"text": "Summary after the crash"}], match=f"kill-{token}")
    result = tasks.compact_conversation.delay(conversation.pk)
    wait_for(lambda: bodies(llm, f"kill-{token}"), timeout=10, what="the summary request")

    worker.kill()
    conversation.refresh_from_db()
    assert conversation.compaction_claimed_at is not None, "the dead worker's claim is left behind"
    assert not Summary.objects.filter(conversation=conversation).exists()
    assert worker.pending() == (0, 1), "the task is delivered but not acknowledged"

    worker.start()
    summary = wait_for(lambda: Summary.objects.filter(conversation=conversation).first(), timeout=15, what="the summary after redelivery")
    worker.wait_for_task(result.id)
    assert summary.text == "Summary after the crash"
    assert worker.log_text().count(f"[{result.id}] received") == 2
    assert Summary.objects.filter(conversation=conversation).count() == 1
    assert len(bodies(llm, f"kill-{token}", system=compaction.SUMMARISER_SYSTEM)) == 2
    # Both calls reached Anthropic, so both are in the ledger: the one that answered with its
    # usage, the killed one with an estimate (Anthropic bills a call that completes upstream).
    records = UsageRecord.objects.filter(conversation=conversation, kind=UsageRecord.Kind.SUMMARY)
    assert sorted(r.estimated for r in records) == [False, True]
    guess = records.get(estimated=True)
    assert guess.input_tokens > 0 and guess.output_tokens == settings.CHATSITE_SUMMARY_MAX_TOKENS and guess.cost > 0


def test_a_conversation_far_past_the_context_window_still_gets_an_answer(worker, llm, token, alice):
    LLMModel.objects.filter(model_id=SONNET).update(context_window=3000, max_output_tokens=200)
    modelcache.clear()
    conversation, thread = long_conversation(alice, exchanges=30, chars=600, marker=f"far-{token}")
    llm.script({"text": "Short answer."}, match=f"newest {token}")
    llm.script({"text": "Thirty questions, thirty answers."}, match=f"far-{token}")

    worker.stop()  # a busy worker: the compaction this send queues runs after the reply
    reply = converse(conversation, f"newest {token}")

    assert reply.status == Message.Status.COMPLETE and reply.content == "Short answer."
    [body] = bodies(llm, f"newest {token}")
    assert body["max_tokens"] == 200
    factor = LLMModel.objects.get(model_id=SONNET).tokenizer_factor
    system = sum(prompting.estimate_tokens(block["text"], factor) for block in body.get("system") or [])
    estimate = system + sum(prompting.estimate_tokens(text_of(m["content"]), factor) + prompting.MESSAGE_OVERHEAD_TOKENS for m in body["messages"])
    assert estimate <= 3000 - 200
    sent = [text_of(m["content"]) for m in body["messages"]]
    trimmed = len(thread) - (len(sent) - 1)
    assert trimmed > 0 and body["messages"][0]["role"] == "user"
    assert sent == [m.content for m in thread[trimmed:]] + [f"newest {token}"]
    assert reply.context_note.startswith(f"The {trimmed} oldest messages did not fit in the model's context window")
    # Trimming queued a compaction step: the worker summarises what no longer fits...
    assert worker.pending() == (1, 0)
    worker.start()
    summary = wait_for(lambda: Summary.objects.filter(conversation=conversation).first(), timeout=10, what="the summary")
    assert summary.text == "Thirty questions, thirty answers."
    # ...and from then on Claude sees the summary and the recent turns, nothing trimmed.
    llm.script({"text": "Next answer."}, match=f"after {token}")
    after = converse(conversation, f"after {token}")
    assert after.status == Message.Status.COMPLETE and after.context_note == ""
    [body] = bodies(llm, f"after {token}")
    assert prompting.SUMMARY_INTRO + summary.text in [block["text"] for block in body["system"]]


# --- budgets ---------------------------------------------------------------------------------


def _spent(user, amount: str) -> None:
    UsageRecord.objects.create(user=user, kind=UsageRecord.Kind.REPLY, model=SONNET, cost=Decimal(amount), uncached_cost=Decimal(amount))


def test_sends_over_the_monthly_budget_are_refused_before_anything_is_stored_or_sent(worker, llm, token, alice, bob, charlie):
    SpendLimit.objects.create(user=None, monthly_limit=Decimal("1.00"))
    SpendLimit.objects.create(user=alice, monthly_limit=Decimal("0.50"))
    SpendLimit.objects.create(user=charlie, monthly_limit=None)  # the person's blank row: no limit
    _spent(alice, "0.75")  # under the default, over her own limit
    _spent(bob, "1.25")  # over the default
    _spent(charlie, "1.25")

    for person in (alice, bob):
        conversation = services.conversation_create(owner=person)
        with pytest.raises(ChatError) as refused:
            services.message_send(conversation=conversation, content=f"hello {token} {person.username}")
        assert refused.value.code == "over_budget" and "monthly budget" in refused.value.message
        assert not Message.objects.filter(conversation=conversation).exists()
        conversation.refresh_from_db()
        assert conversation.title == "" and conversation.current_leaf_id is None
    assert bodies(llm, token) == []

    llm.script({"text": "Hello Charlie."}, match=f"hello {token} charlie")
    reply = converse(titled_conversation(charlie), f"hello {token} charlie")
    assert reply.status == Message.Status.COMPLETE and reply.content == "Hello Charlie."


# --- prompt caching --------------------------------------------------------------------------


@pytest.fixture
def fake_cache_minimum(llm):
    """The fake caches from the same minimum the model row declares (restored afterwards)."""
    before = llm._call("GET", "/_fake/config")["min_cache_tokens"].get(SONNET)
    minimum = LLMModel.objects.get(model_id=SONNET).min_cache_tokens
    llm._call("POST", "/_fake/config", {"min_cache_tokens": {SONNET: minimum}})
    yield minimum
    llm._call("POST", "/_fake/config", {"min_cache_tokens": {SONNET: before}})


def _preset(token: str, *, chars: int, ttl: str = "5m", cache_enabled: bool = True) -> SystemPrompt:
    # Unique text per test: the fake's cache is shared by the whole session.
    return SystemPrompt.objects.create(
        name=f"Preset {token} {ttl} {cache_enabled}", text=_sized(f"You are a patient tutor ({token}).", chars),
        cache_ttl=ttl, cache_enabled=cache_enabled,
    )


@pytest.mark.parametrize("ttl", ["5m", "1h"])
def test_cache_breakpoints_on_the_system_prompt_and_the_newest_message(worker, llm, token, alice, fake_cache_minimum, ttl):
    preset = _preset(token, chars=6000, ttl=ttl)
    assert prompting.estimate_tokens(preset.text) >= fake_cache_minimum
    conversation = titled_conversation(alice, preset_id=preset.pk)
    llm.script({"text": "First answer."}, match=f"one {token}")
    llm.script({"text": "Second answer."}, match=f"two {token}")
    first = converse(conversation, f"one {token}")
    second = converse(conversation, f"two {token}")

    control = {"type": "ephemeral", "ttl": ttl}
    for turn, body in ((1, bodies(llm, f"one {token}")[0]), (2, bodies(llm, f"two {token}")[0])):
        assert body["system"][0]["text"] == preset.text
        found = cache_controls(body)
        assert len(found) <= 4
        newest = len(body["messages"]) - 1
        last_block = len(body["messages"][newest]["content"]) - 1
        assert found == [("system.0", control), (f"messages.{newest}.{last_block}", control)], f"turn {turn}: {found}"
        assert len(body["messages"]) == 2 * turn - 1

    # Turn 1 writes the prefix, turn 2 reads it (and writes its own new tail).
    assert first.cache_creation_input_tokens > 0 and first.cache_read_input_tokens == 0
    assert second.cache_read_input_tokens >= first.cache_creation_input_tokens
    one_hour = (first.cache_creation_1h_input_tokens, second.cache_creation_1h_input_tokens)
    if ttl == "1h":
        assert one_hour == (first.cache_creation_input_tokens, second.cache_creation_input_tokens)
    else:
        assert one_hour == (0, 0)
    for reply in (first, second):
        assert reply.cost == expected_cost(reply, **SONNET_PRICES)


def test_no_cache_control_when_the_preset_turns_caching_off(worker, llm, token, alice):
    conversation = titled_conversation(alice, preset_id=_preset(token, chars=6000, cache_enabled=False).pk)
    llm.script({"text": "Uncached answer."}, match=f"one {token}")
    reply = converse(conversation, f"one {token}")
    [body] = bodies(llm, f"one {token}")
    assert cache_controls(body) == [] and "cache_control" not in str(body)
    assert (reply.cache_creation_input_tokens, reply.cache_read_input_tokens) == (0, 0)
    assert reply.status == Message.Status.COMPLETE


def test_a_prompt_below_the_models_minimum_gets_no_breakpoint_and_no_error(worker, llm, token, alice, fake_cache_minimum):
    preset = _preset(token, chars=600)
    assert prompting.estimate_tokens(preset.text) < LLMModel.objects.get(model_id=SONNET).min_cache_tokens
    conversation = titled_conversation(alice, preset_id=preset.pk)
    llm.script([{"text": "Short one."}, {"text": "Short two."}], match=token)
    replies = [converse(conversation, f"one {token}"), converse(conversation, f"two {token}")]
    for body in bodies(llm, token):
        assert cache_controls(body) == []
    assert [r.status for r in replies] == [Message.Status.COMPLETE] * 2
    assert all(r.cache_creation_input_tokens == r.cache_read_input_tokens == 0 for r in replies)


# --- costs -----------------------------------------------------------------------------------


def test_reply_costs_are_computed_from_stored_tokens_and_kept_when_prices_change(worker, llm, token, alice, fake_cache_minimum):
    conversation = titled_conversation(alice, preset_id=_preset(token, chars=6000).pk)
    llm.script({"text": "First answer, with a few more words."}, match=f"one {token}")
    llm.script({"text": "Second answer."}, match=f"two {token}")
    llm.script({"text": "Third answer."}, match=f"three {token}")
    first = converse(conversation, f"one {token}")
    second = converse(conversation, f"two {token}")
    model = LLMModel.objects.get(model_id=SONNET)

    for reply in (first, second):
        record = UsageRecord.objects.get(message=reply)
        assert record.kind == UsageRecord.Kind.REPLY and record.model == SONNET and record.user_id == alice.pk
        usage = Usage(
            input_tokens=reply.input_tokens, output_tokens=reply.output_tokens,
            cache_creation_input_tokens=reply.cache_creation_input_tokens, cache_read_input_tokens=reply.cache_read_input_tokens,
            cache_creation_1h_input_tokens=reply.cache_creation_1h_input_tokens,
        )
        by_hand = expected_cost(reply, **SONNET_PRICES)
        assert reply.cost == record.cost == by_hand == cost_of(usage, Prices.of(model)).total.quantize(Decimal("1e-8"))
        assert record.cost == expected_cost(record, **SONNET_PRICES)
        assert (record.input_tokens, record.output_tokens, record.cache_read_tokens) == (reply.input_tokens, reply.output_tokens, reply.cache_read_input_tokens)
        assert record.cache_write_5m_tokens + record.cache_write_1h_tokens == reply.cache_creation_input_tokens
        # Cache tokens are billed once, at their own rate: never also as plain input.
        double_billed = by_hand + (reply.cache_creation_input_tokens + reply.cache_read_input_tokens) * Decimal(2) / MILLION
        assert reply.cost < double_billed or reply.cache_creation_input_tokens + reply.cache_read_input_tokens == 0
        uncached = (Decimal(usage.prompt_tokens) * 2 + reply.output_tokens * 10) / MILLION
        assert record.uncached_cost == uncached.quantize(Decimal("1e-8"))
    assert first.cache_creation_input_tokens > 0 and second.cache_read_input_tokens > 0
    assert second.cost < UsageRecord.objects.get(message=second).uncached_cost  # the cache read made turn 2 cheap

    LLMModel.objects.filter(model_id=SONNET).update(input_price=Decimal("20"), output_price=Decimal("100"), cache_read_price=Decimal("1"), cache_write_5m_price=Decimal("25"))
    modelcache.clear()
    for reply in (first, second):
        stored = Message.objects.get(pk=reply.pk)
        assert stored.cost == reply.cost and UsageRecord.objects.get(message=reply).cost == reply.cost
    third = converse(conversation, f"three {token}")
    assert third.cost == expected_cost(third, input_price="20", output_price="100", write_5m="25", write_1h="4", read="1")
