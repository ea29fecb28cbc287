"""Chatsite against today's models, as the strict fake plays them (issue 21): Continue without
prefill, titles and summaries with thinking under control, no foreign thinking blocks after a
model change or an import, and prompt estimates that keep up with the newer tokenizer.

Replies run through the real runner on a hub and the real SDK talks to the fake over HTTP; the
fake's rules are the catalogue's capability table (conversations.catalog.CAPABILITIES).
"""

from __future__ import annotations

import asyncio
import json
import logging

import anthropic
import pytest
from asgiref.sync import async_to_sync

from conversations import catalog, compaction, exports, llm as llm_module, modelcache, prompting, runner, selectors, services, titles
from conversations.hub import Hub
from conversations.models import Conversation, LLMModel, Message, Summary, UsageRecord

pytestmark = [pytest.mark.django_db(transaction=True)]

CATALOGUE = sorted(catalog.CAPABILITIES)
SONNET, OPUS, HAIKU, FABLE = "claude-sonnet-5-5", "claude-opus-5-5", "claude-haiku-5-5", "claude-fable-5-1"


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def run_reply(spec: services.GenerationSpec) -> Message:
    """One generation through the real runner (SDK → fake → finish)."""

    async def go() -> None:
        hub = Hub()
        run = hub.start(spec, runner.run_generation)
        try:
            await asyncio.wait_for(asyncio.shield(run.task), timeout=20)
        finally:
            await hub.close()

    async_to_sync(go)()
    return Message.objects.get(pk=spec.message_id)


def enable(model_id: str) -> LLMModel:
    LLMModel.objects.filter(model_id=model_id).update(enabled=True)
    modelcache.clear()
    return LLMModel.objects.get(model_id=model_id)


def exchange(owner, model_id: str, question: str, answer: str, *, status: str = Message.Status.COMPLETE, title: str = "Named") -> Conversation:
    """A conversation with one finished (or stopped) question and reply."""
    conversation = services.conversation_create(owner=owner, model=enable(model_id).model_id)
    asked = Message.objects.create(conversation=conversation, role=Message.Role.USER, content=question)
    reply = Message.objects.create(conversation=conversation, parent=asked, role=Message.Role.ASSISTANT, content=answer, status=status, model=model_id)
    conversation.current_leaf = reply
    conversation.title = title
    conversation.save(update_fields=["current_leaf", "title"])
    return conversation


def sent_bodies(fake, containing: str) -> list[dict]:
    return [r["body"] for r in fake.requests() if isinstance(r.get("body"), dict) and containing in json.dumps(r["body"])]


# --- 1. Continue -----------------------------------------------------------------------------


@pytest.mark.parametrize("model_id", CATALOGUE)
def test_continue_works_on_every_catalogue_model_without_a_prefill(llm, token, alice, model_id):
    kept = "The three primary colours of light are red,"
    conversation = exchange(alice, model_id, f"Name the primary colours of light. {token}", kept, status=Message.Status.STOPPED)
    stopped = conversation.current_leaf
    llm.script({"text": " green and blue.", "match_in": "all_user_turns"}, match=token)

    reply, spec = services.reply_continue(conversation=conversation, message_id=stopped.pk)
    done = run_reply(spec)

    assert (done.pk, done.status, done.error) == (stopped.pk, Message.Status.COMPLETE, "")
    assert done.content == kept + " green and blue."  # one reply: the new text joined to the kept text
    [body] = sent_bodies(llm, token)
    assert body["model"] == model_id
    *_, person, own, carry_on = body["messages"]
    assert (person["role"], own, carry_on["role"]) == ("user", {"role": "assistant", "content": kept}, "user")
    assert carry_on["content"] == prompting.CONTINUE_INSTRUCTION


def test_a_model_that_accepts_prefill_is_continued_with_one(llm, token, alice):
    """An admin-added older model that still takes a prefill gets the exact continuation."""
    LLMModel.objects.create(
        model_id="claude-sonnet-4-6", display_name="Claude Sonnet 4.6", accepts_prefill=True, thinks_by_default=False,
        input_price=3, output_price=15, cache_write_5m_price="3.75", cache_write_1h_price=6, cache_read_price="0.30",
    )
    modelcache.clear()
    kept = "One, two,"
    conversation = exchange(alice, "claude-sonnet-4-6", f"Count to four. {token}", kept + " ", status=Message.Status.STOPPED)
    llm.script({"text": " three, four."}, match=token)
    _, spec = services.reply_continue(conversation=conversation, message_id=conversation.current_leaf_id)
    done = run_reply(spec)
    assert done.status == Message.Status.COMPLETE and done.content == kept + " " + " three, four."
    [body] = sent_bodies(llm, token)
    assert body["messages"][-1] == {"role": "assistant", "content": kept}  # no trailing whitespace: the API refuses it


def test_thinking_is_never_shown_as_answer_text(llm, token, alice):
    """Replies start with a thinking block; even when its text is sent (display "summarized"),
    only the text block is the answer: what followers are sent and what is stored."""
    thinking = {"text": "The visible answer.", "thinking": f"private-reasoning {token} weighing options", "display": "summarized"}
    llm.script(thinking, match=f"direct {token}")
    pieces: list[str] = []

    async def stream() -> llm_module.StreamResult:
        return await llm_module.stream_message(
            model=SONNET, system=None, messages=[{"role": "user", "content": f"direct {token}"}], max_tokens=1000, on_text=pieces.append,
        )

    result = async_to_sync(stream)()
    assert "".join(pieces) == "The visible answer." and result.text_deltas == 3 and result.stop_reason == "end_turn"
    assert result.usage.output_tokens > 3  # the thinking is billed as output too

    conversation = services.conversation_create(owner=alice)
    llm.script(thinking, match=f"stored {token}")
    _, _, spec = services.message_send(conversation=conversation, content=f"stored {token}")
    reply = run_reply(spec)
    assert reply.status == Message.Status.COMPLETE and reply.content == "The visible answer."
    assert reply.output_tokens == result.usage.output_tokens


# --- 2. Titles and summaries -----------------------------------------------------------------


def _make_utility(model_id: str) -> LLMModel:
    LLMModel.objects.update(is_utility=False)
    LLMModel.objects.filter(model_id=model_id).update(is_utility=True)
    modelcache.clear()
    return LLMModel.objects.get(model_id=model_id)


@pytest.mark.parametrize("model_id", CATALOGUE)
def test_a_title_from_a_model_that_thinks_first(llm, token, alice, settings, model_id):
    utility = _make_utility(model_id)
    conversation = exchange(alice, SONNET, "Where should I eat in Lisbon?", f"Try the seafood in Alfama. {token}", title="")
    Conversation.objects.filter(pk=conversation.pk).update(title_source=Conversation.TitleSource.FIRST_MESSAGE)
    llm.script({"text": "Lisbon Seafood Tips"}, match=token)

    assert titles.name_conversation(conversation.pk) == "Lisbon Seafood Tips"

    conversation.refresh_from_db()
    assert (conversation.title, conversation.title_source) == ("Lisbon Seafood Tips", Conversation.TitleSource.AUTO)
    [body] = sent_bodies(llm, token)
    caps = catalog.CAPABILITIES[model_id]
    assert "budget_tokens" not in json.dumps(body) and "temperature" not in body
    if caps.thinking_off:  # thinking off where the model allows it: all 30 tokens for the title
        assert body["thinking"] == {"type": caps.thinking_off} and body["max_tokens"] == settings.CHATSITE_TITLE_MAX_TOKENS
    else:  # it cannot be turned off: the lowest effort, and room for thinking
        assert "thinking" not in body and body["max_tokens"] > settings.CHATSITE_TITLE_MAX_TOKENS
    assert body["output_config"] == {"effort": "low"}
    assert UsageRecord.objects.filter(conversation=conversation, kind=UsageRecord.Kind.TITLE, model=utility.model_id).count() == 1


def test_a_reply_with_no_text_block_is_a_failure_never_an_empty_title(llm, token, alice):
    _make_utility(FABLE)  # thinking cannot be turned off on Fable 5.1
    conversation = exchange(alice, SONNET, "Plan my week.", f"Here is a plan. {token}", title="")
    Conversation.objects.filter(pk=conversation.pk).update(title_source=Conversation.TitleSource.FIRST_MESSAGE)
    llm.script({"text": "Never reached", "thinking": 50_000}, match=token)  # thinks past any max_tokens

    with pytest.raises(llm_module.LLMError) as failed:
        titles.name_conversation(conversation.pk)
    assert failed.value.code == "empty_reply" and failed.value.retryable  # the task retries it, then logs it
    conversation.refresh_from_db()
    assert conversation.title_source == Conversation.TitleSource.FIRST_MESSAGE  # no empty title
    record = UsageRecord.objects.get(conversation=conversation, kind=UsageRecord.Kind.TITLE)
    assert record.output_tokens > 0  # the thinking was billed, so it is in the ledger


@pytest.mark.parametrize("model_id", [HAIKU, OPUS])
def test_a_summary_from_a_model_that_thinks_first(llm, token, alice, settings, model_id):
    _make_utility(model_id)
    settings.CHATSITE_CONTEXT_BUDGET_TOKENS = 600
    conversation = exchange(alice, SONNET, f"Question 0 {token} " + "words " * 100, "Answer 0 " + "words " * 100)
    parent = conversation.current_leaf
    for i in range(1, 6):
        asked = Message.objects.create(conversation=conversation, parent=parent, role=Message.Role.USER, content=f"Question {i} " + "words " * 100)
        parent = Message.objects.create(conversation=conversation, parent=asked, role=Message.Role.ASSISTANT, content=f"Answer {i} " + "words " * 100, model=SONNET)
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf=parent, context_tokens=2000)
    llm.script({"text": "The person asked six questions about words."}, match=token)

    summary = compaction.compact(conversation.pk)

    assert summary is not None and summary.text == "The person asked six questions about words." and summary.model == model_id
    [body] = sent_bodies(llm, token)
    caps = catalog.CAPABILITIES[model_id]
    if caps.thinking_off:
        assert body["thinking"] == {"type": caps.thinking_off} and body["max_tokens"] == settings.CHATSITE_SUMMARY_MAX_TOKENS
    else:
        assert "thinking" not in body and body["max_tokens"] > settings.CHATSITE_SUMMARY_MAX_TOKENS
    assert body["output_config"] == {"effort": "low"}


def test_a_summary_reply_with_no_text_makes_no_summary_and_is_reported(llm, token, alice, settings, caplog):
    _make_utility(OPUS)
    settings.CHATSITE_CONTEXT_BUDGET_TOKENS = 600
    conversation = exchange(alice, SONNET, f"Question 0 {token} " + "words " * 100, "Answer 0 " + "words " * 100)
    parent = conversation.current_leaf
    for i in range(1, 6):
        asked = Message.objects.create(conversation=conversation, parent=parent, role=Message.Role.USER, content=f"Question {i} " + "words " * 100)
        parent = Message.objects.create(conversation=conversation, parent=asked, role=Message.Role.ASSISTANT, content=f"Answer {i} " + "words " * 100, model=SONNET)
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf=parent, context_tokens=2000)
    llm.script({"text": "Never reached", "thinking": 50_000}, match=token)

    with caplog.at_level(logging.WARNING, logger="conversations.compaction"):
        assert compaction.compact(conversation.pk) is None
    assert not Summary.objects.filter(conversation=conversation).exists()
    assert "no text" in caplog.text and "max_tokens" in caplog.text
    assert UsageRecord.objects.filter(conversation=conversation, kind=UsageRecord.Kind.SUMMARY).count() == 1


# --- 3. Thinking blocks stay with the model that made them -----------------------------------


def test_after_an_import_from_another_model_no_foreign_thinking_block_is_sent(llm, token, alice, bob):
    # Alice's conversation on Sonnet 5.5, whose replies come back with thinking blocks...
    conversation = services.conversation_create(owner=alice)
    llm.script({"text": "Lisbon in May is mild."}, match=f"one {token}")
    _, _, spec = services.message_send(conversation=conversation, content=f"Weather in Lisbon? one {token}")
    assert run_reply(spec).status == Message.Status.COMPLETE
    [first] = [r for r in llm.requests() if f"one {token}" in json.dumps(r["body"])]
    # ...exported and imported by Bob on a server where Sonnet 5.5 is turned off: Opus 5.5 answers.
    raw = exports.conversation_export_json(conversation=conversation).encode()
    LLMModel.objects.filter(model_id=SONNET).update(enabled=False, is_default=False)
    LLMModel.objects.filter(model_id=OPUS).update(is_default=True)
    modelcache.clear()
    imported = exports.conversation_import(owner=bob, raw=raw)
    assert (imported.conversation.model, imported.replaced_model) == (OPUS, SONNET)

    llm.script({"text": "Pack a light jacket."}, match=f"two {token}")
    _, _, spec = services.message_send(conversation=imported.conversation, content=f"What to pack? two {token}")
    reply = run_reply(spec)

    assert reply.status == Message.Status.COMPLETE and reply.content == "Pack a light jacket."
    [body] = sent_bodies(llm, f"two {token}")
    assert body["model"] == OPUS
    assert "thinking" not in json.dumps(body["messages"])  # only text travels between models
    assert first["body"]["model"] == SONNET


# --- 4. Estimates that keep up with the tokenizer --------------------------------------------


LONG_MIXED = (
    "Meeting notes, in three languages.\n"
    + "The quarterly review covered revenue, hiring and the roadmap. " * 20
    + "会議では売上、採用、ロードマップについて話し合いました。" * 30
    + "Η συνάντηση κάλυψε τα έσοδα, τις προσλήψεις και τον οδικό χάρτη. " * 10
    + "def total(xs: list[int]) -> int:\n    return sum(x * 2 for x in xs if x > 0)\n" * 10
)


def test_a_long_prompts_estimate_against_the_fakes_count(llm):
    client = anthropic.Anthropic(api_key="test-key", base_url=llm.url, max_retries=0)
    counted = client.messages.count_tokens(model=SONNET, messages=[{"role": "user", "content": LONG_MIXED}]).input_tokens
    estimate = prompting.estimate_tokens(LONG_MIXED)  # the estimate for the catalogue's tokenizer
    # Never below what the API counts (the request would not fit), and not far above it either
    # (compaction and trimming would come early).
    assert counted <= estimate <= counted * 1.1, (estimate, counted)


def test_a_conversation_that_only_fits_by_a_characters_per_token_rule_is_trimmed_before_sending(llm, token, alice, settings):
    """Japanese counts about a token a character: an estimate of three characters a token sends
    a prompt past the window, and the API refuses it."""
    settings.CHATSITE_CONTEXT_SAFETY_TOKENS = 50
    LLMModel.objects.filter(model_id=SONNET).update(context_window=3000, max_output_tokens=300)
    modelcache.clear()
    llm._call("POST", "/_fake/config", {"context_window": {SONNET: 3000}})
    try:
        conversation = exchange(alice, SONNET, "京都の観光について教えてください。" * 40, "京都には多くの寺院や神社があります。" * 40)
        parent = conversation.current_leaf
        for i in range(3):
            asked = Message.objects.create(conversation=conversation, parent=parent, role=Message.Role.USER, content=f"質問{i}:" + "おすすめの季節はいつですか。" * 40)
            parent = Message.objects.create(conversation=conversation, parent=asked, role=Message.Role.ASSISTANT, content=f"回答{i}:" + "春と秋がおすすめです。" * 40, model=SONNET)
        Conversation.objects.filter(pk=conversation.pk).update(current_leaf=parent)
        conversation.refresh_from_db()
        llm.script({"text": "秋がいちばんです。"}, match=token)

        _, _, spec = services.message_send(conversation=conversation, content=f"では、いつ行けばいいですか。{token}")
        reply = run_reply(spec)
    finally:
        llm._call("POST", "/_fake/config", {"context_window": {SONNET: None}})

    assert (reply.status, reply.error) == (Message.Status.COMPLETE, ""), reply.error
    assert reply.content == "秋がいちばんです。"
    assert reply.context_note.startswith("The ") and "did not fit in the model's context window" in reply.context_note
    assert reply.input_tokens + reply.cache_creation_input_tokens + reply.cache_read_input_tokens <= 3000 - 300


def test_the_catalogue_rows_carry_the_documented_behaviour_after_migrating():
    from importlib import import_module

    from django.apps import apps

    for model_id in CATALOGUE:
        row = LLMModel.objects.get(model_id=model_id)
        assert {name: getattr(row, name) for name in catalog.MODEL_FIELDS} == catalog.capability_fields(model_id)
    # A database seeded before issue 21 had the field defaults; migration 0007 corrects them.
    LLMModel.objects.update(accepts_prefill=True, thinks_by_default=False, thinking_off="", tokenizer_factor="1.00")
    import_module("conversations.migrations.0007_model_capabilities").copy_capabilities(apps, None)
    for model_id in CATALOGUE:
        row = LLMModel.objects.get(model_id=model_id)
        assert {name: getattr(row, name) for name in catalog.MODEL_FIELDS} == catalog.capability_fields(model_id)
