"""The fake Anthropic API (package ``fakeanthropic``), driven by the REAL anthropic SDK over HTTP.

Run: .venv/bin/python -m pytest tests/test_fake_anthropic.py -q -p no:django
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid

import anthropic
import httpx2
import pytest

from tests.fakeserver import FakeAnthropicProcess

MODEL = "claude-sonnet-4-6"


@pytest.fixture(scope="module")
def fake():
    # tps=0: no pacing unless a reply asks for it, so the suite stays fast.
    proc = FakeAnthropicProcess(tps=0).start()
    proc.reset()
    try:
        yield proc
    finally:
        proc.stop()


def client_for(fake: FakeAnthropicProcess, **kwargs) -> anthropic.AsyncAnthropic:
    kwargs.setdefault("max_retries", 0)
    return anthropic.AsyncAnthropic(api_key="test", base_url=fake.url, **kwargs)


def token() -> str:
    """A unique marker to route scripted replies (see the `match` field)."""
    return "tok-" + uuid.uuid4().hex[:12]


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def requests_with(fake: FakeAnthropicProcess, marker: str) -> list[dict]:
    return [r for r in fake.requests() if marker in json.dumps(r["body"])]


# --------------------------------------------------------------------------- replies


@pytest.mark.asyncio
async def test_non_streaming_reply_and_usage(fake):
    t = token()
    fake.script([{"text": "Hello from the fake, friend."}], match=t)
    async with client_for(fake) as client:
        msg = await client.messages.create(model=MODEL, max_tokens=100, messages=user(f"{t} say hi"))
    assert msg.id.startswith("msg_fake_")
    assert msg.type == "message" and msg.role == "assistant" and msg.model == MODEL
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == "Hello from the fake, friend."
    assert msg.stop_reason == "end_turn" and msg.stop_sequence is None
    assert msg.usage.output_tokens == 5  # "Hello " "from " "the " "fake, " "friend."
    assert msg.usage.input_tokens == 6  # ceil(len("tok-xxxxxxxxxxxx say hi") / 4) == ceil(23 / 4)
    assert msg.usage.cache_creation_input_tokens == 0
    assert msg.usage.cache_read_input_tokens == 0


@pytest.mark.asyncio
async def test_max_tokens_truncates(fake):
    t = token()
    fake.script([{"text": "one two three four five six"}, {"text": "one two three four five six"}], match=t)
    async with client_for(fake) as client:
        msg = await client.messages.create(model=MODEL, max_tokens=3, messages=user(t))
        assert msg.content[0].text == "one two three "
        assert msg.stop_reason == "max_tokens" and msg.usage.output_tokens == 3
        async with client.messages.stream(model=MODEL, max_tokens=4, messages=user(t)) as stream:
            final = await stream.get_final_message()
        assert final.content[0].text == "one two three four "
        assert final.stop_reason == "max_tokens" and final.usage.output_tokens == 4


@pytest.mark.asyncio
async def test_stream_helper_exact_text_and_final_usage(fake):
    t = token()
    text = "Streaming works.\n\n```python\nprint('hi')\n```\nA supercalifragilistic word!"
    fake.script([{"text": text, "tps": 500}], match=t)
    system = [{"type": "text", "text": f"You are helpful. {t} " + "x" * 400, "cache_control": {"type": "ephemeral"}}]
    async with client_for(fake) as client:
        async with client.messages.stream(model=MODEL, max_tokens=1000, system=system,
                                          messages=user(f"{t} go")) as stream:
            pieces = [p async for p in stream.text_stream]
            final = await stream.get_final_message()
    assert "".join(pieces) == text
    assert len(pieces) > 5 and max(len(p.strip()) for p in pieces) <= 8
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == len(pieces)
    system_tokens = -(-len(system[0]["text"]) // 4)
    assert final.usage.cache_creation_input_tokens == system_tokens
    assert final.usage.cache_read_input_tokens == 0
    assert final.usage.input_tokens == -(-(len(system[0]["text"]) + len(f"{t} go")) // 4) - system_tokens


@pytest.mark.asyncio
async def test_lean_path_iter_lines_events_in_order(fake):
    t = token()
    fake.script([{"text": "alpha beta gamma"}], match=t)
    async with client_for(fake) as client:
        async with client.messages.with_streaming_response.create(
            model=MODEL, max_tokens=100, messages=user(t), stream=True
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = [line async for line in response.iter_lines()]
    events = [line[len("event: "):] for line in lines if line.startswith("event: ")]
    datas = [json.loads(line[len("data: "):]) for line in lines if line.startswith("data: ")]
    assert events == [
        "message_start", "content_block_start", "ping",
        "content_block_delta", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop",
    ]
    # Every frame carries both lines, and the data's type matches the event name.
    assert [d["type"] for d in datas] == events
    assert [d["delta"]["text"] for d in datas if d["type"] == "content_block_delta"] == ["alpha ", "beta ", "gamma"]
    start_usage = datas[0]["message"]["usage"]
    assert start_usage["output_tokens"] == 1
    assert {"input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"} <= start_usage.keys()
    assert datas[-2]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert datas[-2]["usage"]["output_tokens"] == 3


@pytest.mark.asyncio
async def test_usage_override(fake):
    t = token()
    fake.script([{"text": "ok", "usage": {"input_tokens": 1234, "output_tokens": 77}}] * 2, match=t)
    async with client_for(fake) as client:
        msg = await client.messages.create(model=MODEL, max_tokens=10, messages=user(t))
        assert (msg.usage.input_tokens, msg.usage.output_tokens) == (1234, 77)
        async with client.messages.stream(model=MODEL, max_tokens=10, messages=user(t)) as stream:
            final = await stream.get_final_message()
        assert (final.usage.input_tokens, final.usage.output_tokens) == (1234, 77)


@pytest.mark.asyncio
async def test_default_reply_is_the_demo_answer(fake):
    t = token()
    async with client_for(fake) as client:
        msg = await client.messages.create(
            model=MODEL, max_tokens=4096, messages=user(f"{t} How do Python decorators work?")
        )
    text = msg.content[0].text
    assert msg.stop_reason == "end_turn"
    assert "\n## " in "\n" + text or "\n### " in text  # a heading
    assert "```python\n" in text and text.count("```") == 2  # a fenced code block
    assert "\n- " in text and "\n1. " in text and "**" in text and "`make run`" in text
    assert "ANTHROPIC_API_KEY" in text and "offline demo" in text
    assert f"> {t} How do Python decorators work?" in text  # echoes the message start
    assert 120 <= len(text.split()) <= 200


# --------------------------------------------------------------------------- errors and retries


@pytest.mark.asyncio
async def test_429_then_success_is_retried(fake):
    t = token()
    fake.script([{"status": 429, "retry_after_ms": 10}, {"text": "finally"}], match=t)
    async with client_for(fake, max_retries=2) as client:
        msg = await client.messages.create(model=MODEL, max_tokens=10, messages=user(t))
    assert msg.content[0].text == "finally"
    assert len(requests_with(fake, t)) == 2


@pytest.mark.asyncio
async def test_429_headers_and_body(fake):
    t = token()
    fake.script([{"status": 429, "retry_after_ms": 1500, "should_retry": False}], match=t)
    async with client_for(fake, max_retries=2) as client:
        with pytest.raises(anthropic.RateLimitError) as info:
            await client.messages.create(model=MODEL, max_tokens=10, messages=user(t))
    err = info.value
    assert err.status_code == 429
    assert err.response.headers["retry-after-ms"] == "1500"
    assert err.response.headers["retry-after"] == "2"
    assert err.response.headers["x-should-retry"] == "false"  # so the SDK did not retry
    assert err.body == {"type": "error", "error": {"type": "rate_limit_error", "message": err.body["error"]["message"]}}
    assert len(requests_with(fake, t)) == 1


@pytest.mark.asyncio
async def test_529_three_times_exhausts_retries(fake):
    t = token()
    fake.script([{"status": 529, "repeat": 3, "retry_after_ms": 10}], match=t)
    async with client_for(fake, max_retries=2) as client:
        with pytest.raises(anthropic.APIStatusError) as info:
            await client.messages.create(model=MODEL, max_tokens=10, messages=user(t))
    assert type(info.value) is anthropic.OverloadedError
    assert isinstance(info.value, anthropic.InternalServerError)
    assert info.value.status_code == 529
    assert info.value.body["error"]["type"] == "overloaded_error"
    assert len(requests_with(fake, t)) == 3


@pytest.mark.asyncio
async def test_500_without_retries(fake):
    t = token()
    fake.script([{"status": 500}], match=t)
    async with client_for(fake, max_retries=0) as client:
        with pytest.raises(anthropic.InternalServerError) as info:
            await client.messages.create(model=MODEL, max_tokens=10, messages=user(t))
    assert info.value.status_code == 500
    assert info.value.body["error"]["type"] == "api_error"
    assert len(requests_with(fake, t)) == 1


@pytest.mark.asyncio
async def test_scripted_400_and_401(fake):
    t = token()
    fake.script([{"status": 400, "message": "bad thing"}, {"status": 401}], match=t)
    async with client_for(fake, max_retries=2) as client:
        with pytest.raises(anthropic.BadRequestError) as info:
            await client.messages.create(model=MODEL, max_tokens=10, messages=user(t))
        assert info.value.body == {"type": "error", "error": {"type": "invalid_request_error", "message": "bad thing"}}
        with pytest.raises(anthropic.AuthenticationError):
            await client.messages.create(model=MODEL, max_tokens=10, messages=user(t))


@pytest.mark.asyncio
async def test_cut_after_breaks_the_stream(fake):
    t = token()
    fake.script([{"text": "one two three four five six", "cut_after": 3}], match=t)
    got = []
    async with client_for(fake, max_retries=2) as client:
        # A broken body mid-stream surfaces as httpx2's own error: the SDK neither wraps
        # it in APIConnectionError nor retries it (the response had already started).
        with pytest.raises(httpx2.RemoteProtocolError, match="incomplete chunked read"):
            async with client.messages.stream(model=MODEL, max_tokens=100, messages=user(t)) as stream:
                async for piece in stream.text_stream:
                    got.append(piece)
    assert got == ["one ", "two ", "three "]
    assert len(requests_with(fake, t)) == 1


@pytest.mark.asyncio
async def test_error_event_mid_stream(fake):
    t = token()
    fake.script([{"text": "one two three four five six", "error_event_after": 2}], match=t)
    got = []
    async with client_for(fake, max_retries=2) as client:
        with pytest.raises(anthropic.APIStatusError) as info:
            async with client.messages.stream(model=MODEL, max_tokens=100, messages=user(t)) as stream:
                async for piece in stream.text_stream:
                    got.append(piece)
    assert type(info.value) is anthropic.APIStatusError
    assert info.value.status_code == 200
    assert info.value.body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert got == ["one ", "two "]
    assert len(requests_with(fake, t)) == 1  # not retried


@pytest.mark.asyncio
async def test_slow_first_byte_times_out(fake):
    t = token()
    fake.script([{"text": "too late", "first_byte_delay_ms": 1500}], match=t)
    async with client_for(fake, max_retries=0, timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(anthropic.APITimeoutError):
            async with client.messages.stream(model=MODEL, max_tokens=100, messages=user(t)) as stream:
                await stream.get_final_message()
        assert time.monotonic() - started < 1.2


@pytest.mark.asyncio
async def test_slow_first_byte_within_timeout(fake):
    t = token()
    fake.script([{"text": "worth the wait", "first_byte_delay_ms": 200}], match=t)
    async with client_for(fake, timeout=5) as client:
        started = time.monotonic()
        msg = await client.messages.create(model=MODEL, max_tokens=100, messages=user(t))
    assert msg.content[0].text == "worth the wait"
    assert time.monotonic() - started >= 0.2


@pytest.mark.asyncio
async def test_pacing_follows_tps(fake):
    t = token()
    fake.script([{"text": "a b c d e f g h i j k", "tps": 50}], match=t)  # 11 deltas: 10 gaps of 20 ms
    async with client_for(fake) as client:
        async with client.messages.stream(model=MODEL, max_tokens=100, messages=user(t)) as stream:
            stamps = [time.monotonic() async for _ in stream.text_stream]
    assert len(stamps) == 11
    assert 0.15 <= stamps[-1] - stamps[0] <= 1.0


# --------------------------------------------------------------------------- routing, caching, auth


@pytest.mark.asyncio
async def test_match_routes_replies(fake):
    a, b = token(), token()
    fake.script([{"text": "reply for A"}], match=a)
    fake.script([{"text": "reply for B"}], match=b)
    async with client_for(fake) as client:
        msg_b = await client.messages.create(model=MODEL, max_tokens=50, messages=user(f"hello {b}"))
        # Only the LAST user message is matched: an earlier turn mentioning `a` is ignored.
        msg_a = await client.messages.create(
            model=MODEL, max_tokens=50,
            messages=[
                {"role": "user", "content": f"earlier {b}"},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": [{"type": "text", "text": f"now {a}"}]},
            ],
        )
    assert msg_b.content[0].text == "reply for B"
    assert msg_a.content[0].text == "reply for A"


@pytest.mark.asyncio
async def test_repeat_serves_several_requests(fake):
    t = token()
    fake.script([{"text": "same again", "repeat": 2}, {"text": "then this"}], match=t)
    async with client_for(fake) as client:
        texts = [
            (await client.messages.create(model=MODEL, max_tokens=50, messages=user(t))).content[0].text
            for _ in range(3)
        ]
    assert texts == ["same again", "same again", "then this"]


@pytest.mark.asyncio
async def test_prompt_caching_on_system_block(fake):
    t = token()
    system = [
        {"type": "text", "text": f"Stable instructions {t}. " + "y" * 800, "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Uncached tail."},
    ]
    fake.script([{"text": "first"}, {"text": "second"}], match=t)
    prefix_tokens = -(-len(system[0]["text"]) // 4)
    async with client_for(fake) as client:
        first = await client.messages.create(model=MODEL, max_tokens=50, system=system, messages=user(t))
        second = await client.messages.create(model=MODEL, max_tokens=50, system=system, messages=user(t))
        # Another model does not share the cache.
        other = await client.messages.create(model="claude-haiku-4-5", max_tokens=50, system=system,
                                             messages=user("no script here"))
    assert first.usage.cache_creation_input_tokens == prefix_tokens
    assert first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_creation_input_tokens == 0
    assert second.usage.cache_read_input_tokens == prefix_tokens
    assert first.usage.input_tokens == second.usage.input_tokens > 0
    assert other.usage.cache_creation_input_tokens == prefix_tokens


@pytest.mark.asyncio
async def test_prompt_caching_top_level_and_message_blocks(fake):
    t = token()
    msgs = [
        {"role": "user", "content": [
            {"type": "text", "text": f"{t} long document " + "z" * 400, "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "question?"},
        ]},
    ]
    async with client_for(fake) as client:
        m1 = await client.messages.create(model=MODEL, max_tokens=5, messages=msgs)
        m2 = await client.messages.create(model=MODEL, max_tokens=5, messages=msgs)
        # Top-level cache_control caches the whole prompt.
        whole = user(f"{t} whole prompt " + "w" * 200)
        m3 = await client.messages.create(model=MODEL, max_tokens=5, messages=whole,
                                          cache_control={"type": "ephemeral"})
        m4 = await client.messages.create(model=MODEL, max_tokens=5, messages=whole,
                                          cache_control={"type": "ephemeral"})
    assert m1.usage.cache_creation_input_tokens > 0 and m1.usage.cache_read_input_tokens == 0
    assert m2.usage.cache_read_input_tokens == m1.usage.cache_creation_input_tokens
    assert m2.usage.input_tokens == m1.usage.input_tokens > 0  # "question?" stays uncached
    assert m3.usage.cache_creation_input_tokens > 0 and m3.usage.input_tokens == 0
    assert m4.usage.cache_read_input_tokens == m3.usage.cache_creation_input_tokens


def _raw_post(url: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_missing_auth_is_401(fake):
    t = token()
    body = {"model": MODEL, "max_tokens": 10, "messages": user(t)}
    status, payload = _raw_post(fake.url + "/v1/messages", body)
    assert status == 401
    assert payload["type"] == "error" and payload["error"]["type"] == "authentication_error"
    # Either header style is accepted.
    assert _raw_post(fake.url + "/v1/messages", body, {"x-api-key": "k"})[0] == 200
    assert _raw_post(fake.url + "/v1/messages", body, {"Authorization": "Bearer k"})[0] == 200
    assert _raw_post(fake.url + "/v1/messages", body, {"Authorization": "Bearer "})[0] == 401
    logged = requests_with(fake, t)
    assert [r["auth"] for r in logged] == [False, True, True, False]


def test_invalid_body_is_400(fake):
    auth = {"x-api-key": "k"}
    url = fake.url + "/v1/messages"
    for body in (
        {"max_tokens": 10, "messages": user("x")},
        {"model": MODEL, "messages": user("x")},
        {"model": MODEL, "max_tokens": "10", "messages": user("x")},
        {"model": MODEL, "max_tokens": 10, "messages": []},
    ):
        status, payload = _raw_post(url, body, auth)
        assert status == 400, body
        assert payload["error"]["type"] == "invalid_request_error"


@pytest.mark.asyncio
async def test_request_log_records_body_and_headers(fake):
    t = token()
    async with client_for(fake) as client:
        await client.messages.create(model=MODEL, max_tokens=7, system="be brief",
                                     messages=user(t), metadata={"user_id": "u1"})
    (entry,) = requests_with(fake, t)
    assert entry["body"]["system"] == "be brief" and entry["body"]["max_tokens"] == 7
    assert entry["headers"]["anthropic-version"]
    assert entry["auth"] is True and entry["auth_kind"] == "bearer"


@pytest.mark.asyncio
async def test_count_tokens(fake):
    async with client_for(fake) as client:
        result = await client.messages.count_tokens(
            model=MODEL,
            system=[{"type": "text", "text": "s" * 40, "cache_control": {"type": "ephemeral"}}],
            messages=[{"role": "user", "content": "u" * 21}, {"role": "assistant", "content": "a" * 3}],
        )
    assert result.input_tokens == 16  # ceil((40 + 21 + 3) / 4)


@pytest.mark.asyncio
async def test_stamp_deltas_carry_send_time(fake):
    t = token()
    fake.script([{"stamp": True, "deltas": 20, "tps": 200}], match=t)
    async with client_for(fake) as client:
        async with client.messages.stream(model=MODEL, max_tokens=1000, messages=user(t)) as stream:
            received = [(piece, time.time()) async for piece in stream.text_stream]
            final = await stream.get_final_message()
    assert len(received) == 20 and final.usage.output_tokens == 20
    sent_times = []
    for piece, at in received:
        assert piece.startswith("<t:") and piece.endswith("> ")
        sent = float(piece[3:-2])
        assert 0 <= at - sent < 2.0
        sent_times.append(sent)
    assert sent_times == sorted(sent_times)
    assert sent_times[-1] - sent_times[0] >= 0.05  # paced at 200/s: 19 gaps of 5 ms


def test_stats_and_reset():
    # A private process, so resetting it cannot disturb the shared one.
    with FakeAnthropicProcess(tps=0) as own:
        assert own.script([{"text": "x"}, {"text": "y"}]) == {"queued": 2, "pending": 2}
        req = urllib.request.Request(
            own.url + "/v1/messages",
            data=json.dumps({"model": MODEL, "max_tokens": 5, "messages": user("a"), "stream": True}).encode(),
            headers={"x-api-key": "k", "content-type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read().decode()
        assert raw.startswith("event: message_start\ndata: ") and raw.endswith("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
        stats = own.stats()
        assert stats["requests"] == 1 and stats["streams_started"] == 1 and stats["streams_completed"] == 1
        assert stats["active_streams"] == 0 and stats["queued"] == 1
        assert len(own.requests()) == 1
        assert own.reset() == {"reset": True}
        assert own.requests() == [] and own.stats()["queued"] == 0 and own.stats()["requests"] == 0
        proc = own.proc
    assert proc.returncode == 0  # SIGTERM makes it exit cleanly


@pytest.mark.asyncio
async def test_client_going_away_mid_stream_is_handled(fake):
    t = token()
    fake.script([{"text": " ".join(["word"] * 200), "tps": 100}], match=t)
    before = fake.stats()["streams_disconnected"]
    async with client_for(fake) as client:
        async with client.messages.stream(model=MODEL, max_tokens=1000, messages=user(t)) as stream:
            got = []
            async for piece in stream.text_stream:
                got.append(piece)
                if len(got) == 3:
                    break
    assert got == ["word "] * 3
    # The server notices at its next write and ends the stream quietly. (>=: a stream
    # abandoned by an earlier test may be noticed in the same window.)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        stats = fake.stats()
        if stats["streams_disconnected"] > before and stats["active_streams"] == 0:
            break
        time.sleep(0.05)
    assert stats["streams_disconnected"] >= before + 1
    assert stats["active_streams"] == 0


# --------------------------------------------------------------------------- prompt caching, billed like Anthropic


def text_block(text: str) -> dict:
    return {"type": "text", "text": text}


def cached(text: str, ttl: str | None = None) -> dict:
    cc: dict = {"type": "ephemeral"}
    if ttl is not None:
        cc["ttl"] = ttl
    return {"type": "text", "text": text, "cache_control": cc}


def advance_clock(fake: FakeAnthropicProcess, seconds: float) -> dict:
    status, payload = _raw_post(fake.url + "/_fake/clock", {"advance": seconds})
    assert status == 200, payload
    return payload


def configure(fake: FakeAnthropicProcess, **settings) -> dict:
    status, payload = _raw_post(fake.url + "/_fake/config", settings)
    assert status == 200, payload
    return payload


async def prompt_total(client: anthropic.AsyncAnthropic, model: str = MODEL, **prompt) -> int:
    return (await client.messages.count_tokens(model=model, **prompt)).input_tokens


def assert_adds_up(usage, total: int) -> None:
    """Cache tokens come on top of input_tokens, never counted twice."""
    assert usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens == total
    split = usage.cache_creation
    assert split is not None
    assert split.ephemeral_5m_input_tokens + split.ephemeral_1h_input_tokens == usage.cache_creation_input_tokens


@pytest.mark.asyncio
async def test_incremental_conversation_reads_the_last_turn_and_writes_only_the_new_part(fake):
    t = token()
    system = [cached(f"{t} You are a careful assistant. " + "s" * 600)]
    fake.script([{"text": "first answer"}, {"text": "second answer"}, {"text": "third answer"}], match=t)
    q1 = f"{t} first question " + "a" * 120
    turn1 = [{"role": "user", "content": [cached(q1)]}]
    # The client moves its breakpoint to the newest block each turn; the old block loses
    # its cache_control (and is even sent as a plain string) yet is the same prefix.
    turn2 = [
        {"role": "user", "content": q1},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": [cached(f"{t} second question " + "b" * 120)]},
    ]
    last = cached(f"{t} third question " + "c" * 120)
    tail = text_block("and a short uncached tail")
    turn3 = turn2[:2] + [{"role": "user", "content": turn2[2]["content"][0]["text"]},
                         {"role": "assistant", "content": "second answer"},
                         {"role": "user", "content": [last, tail]}]
    async with client_for(fake) as client:
        m1 = await client.messages.create(model=MODEL, max_tokens=50, system=system, messages=turn1)
        m2 = await client.messages.create(model=MODEL, max_tokens=50, system=system, messages=turn2)
        m3 = await client.messages.create(model=MODEL, max_tokens=50, system=system, messages=turn3)
        total1 = await prompt_total(client, system=system, messages=turn1)
        total2 = await prompt_total(client, system=system, messages=turn2)
        total3 = await prompt_total(client, system=system, messages=turn3)
        upto_last = await prompt_total(client, system=system, messages=turn3[:-1] + [{"role": "user", "content": [last]}])
    assert [m.content[0].text for m in (m1, m2, m3)] == ["first answer", "second answer", "third answer"]
    for msg, total in ((m1, total1), (m2, total2), (m3, total3)):
        assert_adds_up(msg.usage, total)

    # Turn 1: nothing cached yet, both breakpoints written, nothing after the last one.
    assert (m1.usage.cache_read_input_tokens, m1.usage.cache_creation_input_tokens, m1.usage.input_tokens) == (
        0, total1, 0)
    # Turn 2: turn 1's whole prompt is read (found by lookback from the new breakpoint).
    assert m2.usage.cache_read_input_tokens == total1
    assert m2.usage.cache_creation_input_tokens == total2 - total1
    assert m2.usage.input_tokens == 0
    # Turn 3: reads turn 2; input_tokens is only the tail after the last breakpoint.
    assert m3.usage.cache_read_input_tokens == total2
    assert m3.usage.cache_creation_input_tokens == upto_last - total2
    assert m3.usage.input_tokens == total3 - upto_last > 0
    assert m3.usage.cache_creation.ephemeral_5m_input_tokens == upto_last - total2


@pytest.mark.asyncio
async def test_lookback_reaches_20_blocks_back_and_no_further(fake):
    t = token()
    head = [text_block(f"{t} part {i} " + "h" * 40) for i in range(5)]
    first = head[:-1] + [cached(head[-1]["text"])]  # an entry at block 4

    def grown(label: str, extra: int, nearer_at: int | None = None) -> list[dict]:
        """head, then `extra` new blocks; breakpoint on the last (and one at `nearer_at`)."""
        tail = [text_block(f"{label} {i} " + "n" * 20) for i in range(extra)]
        tail[-1] = cached(tail[-1]["text"])
        if nearer_at is not None:
            tail[nearer_at] = cached(tail[nearer_at]["text"])
        return [{"role": "user", "content": head + tail}]

    far, edge, anchored = grown("far", 21), grown("edge", 20), grown("anchored", 21, nearer_at=5)
    async with client_for(fake) as client:
        m0 = await client.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": first}])
        head_tokens = m0.usage.cache_creation_input_tokens
        # Breakpoint at block 25: it looks back to block 5, block 4's entry is one too far.
        m_far = await client.messages.create(model=MODEL, max_tokens=5, messages=far)
        # Breakpoint at block 24: block 4 is exactly 20 boundaries back.
        m_edge = await client.messages.create(model=MODEL, max_tokens=5, messages=edge)
        # 21 blocks again, but a second breakpoint at block 10 reaches block 4.
        m_anchored = await client.messages.create(model=MODEL, max_tokens=5, messages=anchored)
        totals = [await prompt_total(client, messages=m) for m in (far, edge, anchored)]
    assert head_tokens == -(-sum(len(b["text"]) for b in head) // 4) > 0
    assert (m_far.usage.cache_read_input_tokens, m_far.usage.cache_creation_input_tokens) == (0, totals[0])
    assert (m_edge.usage.cache_read_input_tokens, m_edge.usage.cache_creation_input_tokens) == (
        head_tokens, totals[1] - head_tokens)
    assert (m_anchored.usage.cache_read_input_tokens, m_anchored.usage.cache_creation_input_tokens) == (
        head_tokens, totals[2] - head_tokens)
    for msg, total in zip((m_far, m_edge, m_anchored), totals):
        assert_adds_up(msg.usage, total)
        assert msg.usage.input_tokens == 0


async def _cache_use(client: anthropic.AsyncAnthropic, system: list[dict], t: str) -> tuple[int, int]:
    msg = await client.messages.create(model=MODEL, max_tokens=5, system=system, messages=user(t))
    return msg.usage.cache_read_input_tokens, msg.usage.cache_creation_input_tokens


@pytest.mark.asyncio
async def test_5m_entry_expires_after_five_minutes(fake):
    t = token()
    system = [cached(f"{t} five minutes " + "f" * 200)]
    n = -(-len(system[0]["text"]) // 4)
    async with client_for(fake) as client:
        assert await _cache_use(client, system, t) == (0, n)
        assert await _cache_use(client, system, t) == (n, 0)
        advance_clock(fake, 301)
        assert await _cache_use(client, system, t) == (0, n)  # expired: written again


@pytest.mark.asyncio
async def test_1h_entry_survives_five_minutes_but_not_an_hour(fake):
    t = token()
    system = [cached(f"{t} one hour " + "o" * 200, ttl="1h")]
    n = -(-len(system[0]["text"]) // 4)
    async with client_for(fake) as client:
        first = await client.messages.create(model=MODEL, max_tokens=5, system=system, messages=user(t))
        assert first.usage.cache_creation.ephemeral_1h_input_tokens == n
        assert first.usage.cache_creation.ephemeral_5m_input_tokens == 0
        advance_clock(fake, 301)
        assert await _cache_use(client, system, t) == (n, 0)  # also refreshes: 1 h from now
        advance_clock(fake, 3601)
        assert await _cache_use(client, system, t) == (0, n)


@pytest.mark.asyncio
async def test_cache_hit_refreshes_the_expiry(fake):
    t = token()
    system = [cached(f"{t} kept warm " + "k" * 200)]
    n = -(-len(system[0]["text"]) // 4)
    async with client_for(fake) as client:
        assert await _cache_use(client, system, t) == (0, n)
        advance_clock(fake, 200)
        assert await _cache_use(client, system, t) == (n, 0)
        advance_clock(fake, 200)  # 400 s after the write, 200 s after the hit
        assert await _cache_use(client, system, t) == (n, 0)
        advance_clock(fake, 301)
        assert await _cache_use(client, system, t) == (0, n)


@pytest.mark.asyncio
async def test_minimum_cacheable_prefix_per_model():
    small = [cached("short system prompt " + "m" * 100)]  # 30 tokens
    with FakeAnthropicProcess(tps=0, min_cache_tokens=100) as own:  # --min-cache-tokens
        async with client_for(own) as client:
            async def use(model: str, system: list[dict]) -> tuple[int, int, int]:
                u = (await client.messages.create(model=model, max_tokens=5, system=system,
                                                  messages=user("hi"))).usage
                return u.cache_read_input_tokens, u.cache_creation_input_tokens, u.input_tokens

            total = await prompt_total(client, system=small, messages=user("hi"))
            # Below the minimum: silently no caching at all, everything is plain input.
            assert await use(MODEL, small) == (0, 0, total)
            assert await use(MODEL, small) == (0, 0, total)

            # (An older model: the catalogue's count 30 % more tokens, see test_fake_strict.py.)
            assert configure(own, min_cache_tokens={"claude-haiku-4-5": 20}) == {
                "default_min_cache_tokens": 100, "min_cache_tokens": {"claude-haiku-4-5": 20}, "context_window": {}}
            assert await use("claude-haiku-4-5", small) == (0, 30, total - 30)
            assert await use("claude-haiku-4-5", small) == (30, 0, total - 30)
            assert await use(MODEL, small) == (0, 0, total)  # other models keep the default

            # A short breakpoint is skipped; a later long enough one writes the whole prefix.
            both = small + [cached("long enough now " + "l" * 400)]
            both_total = await prompt_total(client, system=both, messages=user("hi"))
            prefix = -(-sum(len(b["text"]) for b in both) // 4)
            assert prefix >= 100
            assert await use(MODEL, both) == (0, prefix, both_total - prefix)

            configure(own, default_min_cache_tokens=0)
            assert await use(MODEL, small) == (0, 30, total - 30)
            own.reset()  # back to the command line's minimum, no overrides
            with urllib.request.urlopen(own.url + "/_fake/config", timeout=10) as resp:
                assert json.loads(resp.read()) == {"default_min_cache_tokens": 100, "min_cache_tokens": {}, "context_window": {}}


@pytest.mark.asyncio
async def test_invalid_cache_control_is_400(fake):
    t = token()
    fake.script([{"text": "served after the rejections"}], match=t)
    five = [cached(f"{t} sys {i}") for i in range(5)]
    cases = [
        (dict(system=five, messages=user(t)),
         "A maximum of 4 blocks with cache_control may be provided. Found 5."),
        (dict(system=five[:4], messages=user(t), cache_control={"type": "ephemeral"}),
         "A maximum of 4 blocks with cache_control may be provided. Found 5."),
        (dict(system=[cached(f"{t} a", "5m"), cached(f"{t} b", "1h")], messages=user(t)),
         "A ttl='1h' cache_control block must not come after a ttl='5m' cache_control block"),
        (dict(system=[cached(f"{t} a")], messages=user(t), cache_control={"type": "ephemeral", "ttl": "1h"}),
         "must not come after"),
        (dict(system=[cached(f"{t} a", "10m")], messages=user(t)), "system.0.cache_control.ttl"),
        (dict(system=[{"type": "text", "text": t, "cache_control": {"type": "persistent"}}], messages=user(t)),
         "system.0.cache_control.type"),
    ]
    async with client_for(fake) as client:
        for kwargs, message in cases:
            with pytest.raises(anthropic.BadRequestError) as info:
                await client.messages.create(model=MODEL, max_tokens=5, **kwargs)
            assert info.value.body["error"]["type"] == "invalid_request_error"
            assert message in info.value.body["error"]["message"], kwargs
            with pytest.raises(anthropic.BadRequestError):
                await client.messages.count_tokens(model=MODEL, **kwargs)
        # Exactly four, 1h before 5m, is fine; the rejected requests used no scripted reply.
        ok = await client.messages.create(
            model=MODEL, max_tokens=5, messages=user(t),
            system=[cached(f"{t} a", "1h"), cached(f"{t} b", "1h"), cached(f"{t} c"), cached(f"{t} d")])
    assert ok.content[0].text == "served after the rejections"
    assert ok.usage.cache_creation.ephemeral_1h_input_tokens > 0 and ok.usage.cache_creation.ephemeral_5m_input_tokens > 0


@pytest.mark.asyncio
async def test_streaming_and_non_streaming_report_the_same_usage(fake):
    t = token()
    system = [text_block("intro"), cached(f"{t} stable rules " + "r" * 300, ttl="1h")]
    messages = [{"role": "user", "content": [text_block(f"{t} summarise this"), cached("document " + "d" * 500)]}]
    fake.script([{"text": "A short summary."}] * 4, match=t)
    one_hour = -(-(len("intro") + len(system[1]["text"])) // 4)
    other_model = "claude-haiku-4-5"  # a cold cache of its own: same state as MODEL's first call

    async def streamed(model: str):
        async with client.messages.stream(model=model, max_tokens=50, system=system, messages=messages) as stream:
            return await stream.get_final_message()

    def input_side(usage) -> dict:
        return usage.model_dump(include={"input_tokens", "cache_read_input_tokens",
                                         "cache_creation_input_tokens", "cache_creation"})

    async with client_for(fake) as client:
        total = await prompt_total(client, system=system, messages=messages)
        cold = await client.messages.create(model=MODEL, max_tokens=50, system=system, messages=messages)
        cold_stream = await streamed(other_model)
        warm = await client.messages.create(model=MODEL, max_tokens=50, system=system, messages=messages)
        warm_stream = await streamed(MODEL)
    for msg in (cold, cold_stream, warm, warm_stream):
        assert msg.content[0].text == "A short summary."
        assert_adds_up(msg.usage, total)
    assert input_side(cold.usage) == input_side(cold_stream.usage) == {
        "input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": total,
        "cache_creation": {"ephemeral_5m_input_tokens": total - one_hour, "ephemeral_1h_input_tokens": one_hour},
    }
    assert input_side(warm.usage) == input_side(warm_stream.usage) == {
        "input_tokens": 0,
        "cache_read_input_tokens": total,
        "cache_creation_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
    }
    assert cold.usage.output_tokens == cold_stream.usage.output_tokens == 3


@pytest.mark.asyncio
async def test_cache_stats_clock_and_reset():
    system = [cached("stats " + "x" * 198)]  # 51 tokens
    with FakeAnthropicProcess(tps=0) as own:
        async with client_for(own) as client:
            for _ in range(3):
                await client.messages.create(model=MODEL, max_tokens=5, system=system, messages=user("q"))
        assert own.stats()["cache"] == {"entries": 1, "reads": 2, "writes": 1,
                                        "read_tokens": 102, "written_tokens": 51}
        assert advance_clock(own, 120)["offset"] == 120
        clock = advance_clock(own, 181)
        assert clock["offset"] == 301 and clock["now"] >= time.time() + 300
        assert own.stats()["cache"]["entries"] == 0  # expired
        assert _raw_post(own.url + "/_fake/clock", {"advance": "soon"})[0] == 400
        own.reset()
        assert own.stats()["cache"] == {"entries": 0, "reads": 0, "writes": 0, "read_tokens": 0, "written_tokens": 0}
        assert advance_clock(own, 0)["offset"] == 0
