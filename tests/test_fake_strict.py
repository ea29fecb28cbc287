"""The fake refuses what the real API refuses for each model of the catalogue, with the real
status, error type and message, and streams what those models stream by default (issue 21).

Driven by the real SDK over HTTP, like test_fake_anthropic.py. The rules come from
conversations.catalog.CAPABILITIES (the table the catalogue is seeded from); the messages are
written out here as the API words them, so this file is also the specification of the fake.
"""

from __future__ import annotations

import uuid

import anthropic
import pytest

from conversations import catalog
from tests.fakeserver import FakeAnthropicProcess

CATALOGUE = sorted(catalog.CAPABILITIES)
SONNET, OPUS, HAIKU, FABLE = "claude-sonnet-5-5", "claude-opus-5-5", "claude-haiku-5-5", "claude-fable-5-1"
OLDER = "claude-sonnet-4-6"  # not in the table: the fake's old lenient behaviour

PREFILL = "This model does not support assistant message prefill. The conversation must end with a user message."
BUDGET = ('"thinking.type.enabled" is not supported for this model. '
          'Use "thinking.type.adaptive" and "output_config.effort" to control thinking behavior.')


@pytest.fixture(scope="module")
def fake():
    proc = FakeAnthropicProcess(tps=0).start()
    try:
        yield proc
    finally:
        proc.stop()


def client_for(fake: FakeAnthropicProcess, key: str = "test-key") -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=key, base_url=fake.url, max_retries=0)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def refusal(call) -> tuple[int, str, str]:
    with pytest.raises(anthropic.APIStatusError) as caught:
        call()
    error = caught.value.body["error"]
    return caught.value.status_code, error["type"], error["message"]


def token() -> str:
    return "tok-" + uuid.uuid4().hex[:12]


@pytest.mark.parametrize("model", CATALOGUE)
def test_a_prefill_is_refused_and_the_conversation_must_end_with_the_person(fake, model):
    client = client_for(fake)
    prefill = [*user("Count to five."), {"role": "assistant", "content": "One, two,"}]
    assert refusal(lambda: client.messages.create(model=model, max_tokens=500, messages=prefill)) == (400, "invalid_request_error", PREFILL)
    # The documented alternative: the kept text, then a user turn asking to carry on.
    carry_on = [*prefill, *user("Continue exactly where you stopped.")]
    assert client.messages.create(model=model, max_tokens=500, messages=carry_on).stop_reason == "end_turn"


def test_an_older_model_still_accepts_a_prefill_without_trailing_whitespace(fake):
    client = client_for(fake)
    t = token()
    fake.script({"text": " three."}, match=t)
    reply = client.messages.create(model=OLDER, max_tokens=50, messages=[*user(t), {"role": "assistant", "content": "One, two,"}])
    assert reply.content[0].text == " three."
    assert refusal(lambda: client.messages.create(model=OLDER, max_tokens=50, messages=[*user(t), {"role": "assistant", "content": "One, "}])) == (
        400, "invalid_request_error", "messages: final assistant content cannot end with trailing whitespace")


@pytest.mark.parametrize("model", CATALOGUE)
def test_sampling_parameters_are_refused_except_the_default_temperature(fake, model):
    client = client_for(fake)
    # (The SDK 2.x dropped these arguments; extra_body still puts them on the wire.)
    for name, value in (("temperature", 0.2), ("temperature", 0), ("top_p", 0.9), ("top_p", 1), ("top_k", 5)):
        assert refusal(lambda: client.messages.create(model=model, max_tokens=500, messages=user("hi"), extra_body={name: value})) == (
            400, "invalid_request_error", f"`{name}` is deprecated for this model."), (name, value)
    assert client.messages.create(model=model, max_tokens=500, messages=user("hi"), extra_body={"temperature": 1}).content


@pytest.mark.parametrize("model", CATALOGUE)
def test_a_thinking_budget_is_refused_and_effort_goes_in_output_config(fake, model):
    client = client_for(fake)
    assert refusal(lambda: client.messages.create(
        model=model, max_tokens=4000, messages=user("hi"), thinking={"type": "enabled", "budget_tokens": 2000},
    )) == (400, "invalid_request_error", BUDGET)
    assert refusal(lambda: client.messages.create(model=model, max_tokens=500, messages=user("hi"), extra_body={"effort": "low"})) == (
        400, "invalid_request_error", "effort: Extra inputs are not permitted")
    assert refusal(lambda: client.messages.create(model=model, max_tokens=500, messages=user("hi"), extra_body={"output_config": {"effort": "minimal"}})) == (
        400, "invalid_request_error", "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'")
    low = client.messages.create(model=model, max_tokens=500, messages=user("hi"), thinking={"type": "adaptive"}, extra_body={"output_config": {"effort": "low"}})
    assert [b.type for b in low.content] == ["thinking", "text"]


@pytest.mark.parametrize("model", CATALOGUE)
def test_thinking_is_turned_off_only_where_and_as_the_model_allows(fake, model):
    client = client_for(fake)
    off = catalog.CAPABILITIES[model].thinking_off

    def ask(kind: str, effort: str):
        return lambda: client.messages.create(
            model=model, max_tokens=50, messages=user("hi"), thinking={"type": kind}, extra_body={"output_config": {"effort": effort}},
        )

    t = token()
    fake.script({"text": "Only text here."}, match=t)
    for kind in ("disabled", "between_tools"):
        if kind == off:
            reply = client.messages.create(
                model=model, max_tokens=50, messages=user(t), thinking={"type": kind}, extra_body={"output_config": {"effort": "high"}},
            )
            assert [b.type for b in reply.content] == ["text"] and reply.usage.output_tokens == 3  # no thinking billed
            assert refusal(ask(kind, "xhigh")) == (400, "invalid_request_error", (
                "output_config.effort 'xhigh' is not supported when thinking is disabled on this model. "
                "Use effort 'high' or below, or enable thinking."))
        else:
            status, kind_of_error, message = refusal(ask(kind, "low"))
            assert (status, kind_of_error) == (400, "invalid_request_error")
            assert message.startswith(f'"thinking.type.{kind}" is not supported for this model.')
    if model == SONNET:
        assert "between_tools" in refusal(ask("disabled", "low"))[2]  # the docs: its message points there


def _stream(client: anthropic.Anthropic, **kwargs) -> tuple[list[str], anthropic.types.Message]:
    events = []
    with client.messages.stream(**kwargs) as stream:
        for event in stream:
            if event.type in ("content_block_start", "content_block_delta"):
                events.append(event.content_block.type if event.type == "content_block_start" else event.delta.type)
        return events, stream.get_final_message()


@pytest.mark.parametrize("model", CATALOGUE)
def test_a_model_that_thinks_by_default_streams_a_signed_thinking_block_before_the_text(fake, model):
    client = client_for(fake)
    t = token()
    fake.script({"text": "The answer is four."}, match=t)
    events, message = _stream(client, model=model, max_tokens=2000, messages=user(f"{t} what is 2+2?"))
    # Display "omitted" is every catalogue model's default: no thinking text, only its signature.
    assert events == ["thinking", "signature_delta", "text", *["text_delta"] * 4]
    thinking, text = message.content
    assert (thinking.type, thinking.thinking, text.text) == ("thinking", "", "The answer is four.")
    assert thinking.signature
    assert message.usage.output_tokens > 4  # the thinking is billed as output too

    fake.script({"text": "Four."}, match=t)
    events, message = _stream(client, model=model, max_tokens=2000, messages=user(f"{t} again"), thinking={"type": "adaptive", "display": "summarized"})
    assert events[:2] == ["thinking", "thinking_delta"] and events[-2:] == ["text", "text_delta"]
    assert message.content[0].thinking and message.content[1].text == "Four."


def test_thinking_counts_toward_max_tokens_and_can_leave_no_text(fake):
    client = client_for(fake)
    # A title-sized max_tokens at Haiku 5.5's default effort: all of it goes to thinking.
    message = client.messages.create(model=HAIKU, max_tokens=30, messages=user("Name this conversation."))
    assert message.stop_reason == "max_tokens" and [b.type for b in message.content] == ["thinking"]
    assert message.usage.output_tokens == 30
    events, streamed = _stream(client, model=HAIKU, max_tokens=30, messages=user("Name this conversation."))
    assert events == ["thinking", "signature_delta"] and streamed.stop_reason == "max_tokens"
    # Thinking off (allowed on Haiku 5.5 at effort high or lower): the 30 tokens are all text.
    t = token()
    fake.script({"text": "Trip to Lisbon"}, match=t)
    titled = client.messages.create(model=HAIKU, max_tokens=30, messages=user(t), thinking={"type": "disabled"})
    assert [b.type for b in titled.content] == ["text"] and titled.content[0].text == "Trip to Lisbon"


def test_thinking_blocks_are_bound_to_the_model_and_the_account_that_made_them(fake):
    client = client_for(fake)
    first = client.messages.create(model=SONNET, max_tokens=2000, messages=user("Plan a trip."))
    thinking = first.content[0].model_dump(include={"type", "thinking", "signature"})
    history = [*user("Plan a trip."), {"role": "assistant", "content": [thinking, {"type": "text", "text": first.content[1].text}]}, *user("And the return?")]
    assert client.messages.create(model=SONNET, max_tokens=2000, messages=history).content  # replayed as received: fine

    invalid = (400, "invalid_request_error", "messages.1.content.0: Invalid `signature` in `thinking` block")
    assert refusal(lambda: client.messages.create(model=OPUS, max_tokens=2000, messages=history)) == invalid  # another model
    assert refusal(lambda: client_for(fake, key="another-account").messages.create(model=SONNET, max_tokens=2000, messages=history)) == invalid
    tampered = [history[0], {"role": "assistant", "content": [{**thinking, "thinking": "I changed this."}, history[1]["content"][1]]}, history[2]]
    assert refusal(lambda: client.messages.create(model=SONNET, max_tokens=2000, messages=tampered)) == invalid
    # Without the thinking block the same history goes to any model.
    plain = [history[0], {"role": "assistant", "content": first.content[1].text}, history[2]]
    assert client.messages.create(model=OPUS, max_tokens=2000, messages=plain).content


def test_too_many_cache_breakpoints_are_refused(fake):
    client = client_for(fake)
    system = [{"type": "text", "text": f"part {i}", "cache_control": {"type": "ephemeral"}} for i in range(5)]
    assert refusal(lambda: client.messages.create(model=SONNET, max_tokens=500, system=system, messages=user("hi"))) == (
        400, "invalid_request_error", "A maximum of 4 blocks with cache_control may be provided. Found 5.")


def test_the_catalogue_models_count_30_percent_more_tokens_and_non_latin_text_more_still(fake):
    client = client_for(fake)

    def count(model: str, text: str) -> int:
        return client.messages.count_tokens(model=model, messages=user(text)).input_tokens

    english = "The quick brown fox jumps over the lazy dog. " * 40  # 1,800 characters
    japanese = "東京の天気は晴れです。" * 40  # 440 characters, 3 UTF-8 bytes each
    assert count(OLDER, english) == 450  # the older tokenizer: four characters a token
    assert count(SONNET, english) == count(HAIKU, english) == 585  # 30 % more
    assert count(SONNET, japanese) == 429  # about a token a character: far above characters / 3
    message = client.messages.create(model=SONNET, max_tokens=500, messages=user(english))
    assert message.usage.input_tokens == 585  # billed as counted


def test_a_prompt_past_the_context_window_is_refused(fake):
    client = client_for(fake)
    fake._call("POST", "/_fake/config", {"context_window": {HAIKU: 100}})
    try:
        assert refusal(lambda: client.messages.create(model=HAIKU, max_tokens=50, messages=user("x" * 400))) == (
            400, "invalid_request_error", "prompt is too long: 130 tokens > 100 maximum")
        assert client.messages.create(model=HAIKU, max_tokens=50, messages=user("x" * 300), thinking={"type": "disabled"}).content
    finally:
        fake._call("POST", "/_fake/config", {"context_window": {HAIKU: None}})
    assert refusal(lambda: client.messages.create(model=HAIKU, max_tokens=200_000, messages=user("hi"), stream=True)) == (
        400, "invalid_request_error", "max_tokens: 200000 > 128000, which is the maximum allowed number of output tokens for claude-haiku-5-5")


def test_every_catalogue_model_has_a_documented_capability_row():
    for row in catalog.MODELS:
        caps = catalog.CAPABILITIES[row["model_id"]]
        assert caps.sources and all(s.startswith("https://platform.claude.com/docs/") for s in caps.sources)
        assert caps.read_on == "2026-12-08" and caps.default_effort in catalog.EFFORTS
        assert caps.thinking_off in ("", "disabled", "between_tools")


def test_docs_models_md_says_what_the_table_says():
    from pathlib import Path

    rows = {}
    for line in (Path(__file__).resolve().parent.parent / "docs" / "models.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| claude-"):
            rows[cells[0]] = cells
    assert sorted(rows) == CATALOGUE
    for model, cells in rows.items():
        caps = catalog.CAPABILITIES[model]
        assert cells[1] == ("accepted" if caps.accepts_prefill else "refused (400)" if model == SONNET else "refused")
        assert cells[4] == caps.default_effort and cells[5] == caps.thinking_display and cells[6] == str(caps.tokenizer_factor)
        assert (f"`{caps.thinking_off}`" in cells[3]) if caps.thinking_off else cells[3] == "cannot"
