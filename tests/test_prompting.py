"""The request for a reply: cache breakpoints, summary placement, trimming to the window."""

from conversations import prompting
from conversations.prompting import CachePolicy

LONG = "word " * 2_000  # ~3,300 estimated tokens


def _breakpoints(prompt: prompting.Prompt) -> list[dict]:
    blocks = list(prompt.system)
    for message in prompt.messages:
        if isinstance(message["content"], list):
            blocks.extend(message["content"])
    return [b["cache_control"] for b in blocks if "cache_control" in b]


def _history(n: int, text: str = "hello there") -> list[dict]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": f"{i} {text}"} for i in range(n)]


def test_long_system_prompt_and_newest_message_carry_breakpoints():
    prompt = prompting.build(system_prompt=LONG, summary="", history=_history(3), policy=CachePolicy(min_tokens=1024), max_prompt_tokens=100_000)
    assert prompt.system[0]["cache_control"] == {"type": "ephemeral", "ttl": "5m"}
    assert prompt.messages[-1]["content"] == [{"type": "text", "text": "2 hello there", "cache_control": {"type": "ephemeral", "ttl": "5m"}}]
    assert all(isinstance(m["content"], str) for m in prompt.messages[:-1])
    assert len(_breakpoints(prompt)) == prompt.breakpoints == 2


def test_summary_is_its_own_cached_system_block_after_the_preset():
    prompt = prompting.build(system_prompt=LONG, summary="They agreed on Postgres.", history=_history(1),
                             policy=CachePolicy(ttl="1h", min_tokens=1024), max_prompt_tokens=100_000)
    assert [b["text"][:4] for b in prompt.system] == ["word", "Summ"]
    assert prompt.system[1]["text"].endswith("They agreed on Postgres.")
    assert _breakpoints(prompt) == [{"type": "ephemeral", "ttl": "1h"}] * 3
    assert prompt.breakpoints <= 4


def test_below_the_models_minimum_nothing_is_marked():
    prompt = prompting.build(system_prompt="Be terse.", summary="", history=_history(3), policy=CachePolicy(min_tokens=1024), max_prompt_tokens=100_000)
    assert _breakpoints(prompt) == [] and prompt.system == [{"type": "text", "text": "Be terse."}]


def test_caching_off_sends_no_breakpoints():
    prompt = prompting.build(system_prompt=LONG, summary="", history=_history(3), policy=CachePolicy(enabled=False), max_prompt_tokens=100_000)
    assert _breakpoints(prompt) == []


def test_too_long_history_is_trimmed_from_the_oldest_whole_exchange_with_a_note():
    history = _history(21, text="x" * 3_000)  # ~1,000 tokens each
    prompt = prompting.build(system_prompt="", summary="", history=history, policy=CachePolicy(), max_prompt_tokens=5_000)
    assert prompt.estimated_tokens <= 5_000
    assert prompt.messages[0]["role"] == "user" and prompt.messages[-1]["content"][0]["text"].startswith("20 ")
    assert prompt.trimmed_messages == 21 - len(prompt.messages) > 0
    assert f"The {prompt.trimmed_messages} oldest messages did not fit" in prompt.note


def test_the_newest_message_is_never_trimmed():
    history = [{"role": "user", "content": "y" * 30_000}]
    prompt = prompting.build(system_prompt="", summary="", history=history, policy=CachePolicy(), max_prompt_tokens=100)
    assert len(prompt.messages) == 1 and prompt.trimmed_messages == 0
