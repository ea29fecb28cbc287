"""The HTTP API served by real daphne processes, used by real HTTP clients.

Two daphne processes on one database and one Redis (as in production): Server-Sent Events read
by aiohttp, a client that drops the connection and re-attaches on the *other* process (the
follow travels through the channel layer), a stop sent to the other process, and a schemathesis
run over the OpenAPI schema (no 500s; responses as documented).
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from dataclasses import dataclass

import aiohttp
import pytest
import requests
import schemathesis
from schemathesis import GenerationMode
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance, status_code_conformance

from tests.sse import SSEEvent, SSEParser, apply_deltas
from tests.faultkit import FaultStack
from tests.wsclient import ChatClient

pytestmark = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs the Redis channel layer (make test provides it)")

SECRET = re.compile(r'id="api-token-secret">(chs_[A-Za-z0-9_-]+)<')


@dataclass
class Live:
    stack: FaultStack
    secret: str  # an API token of a user made through the real sign-up and account pages

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


async def _signup_with_token(base_url: str) -> str:
    client = ChatClient(base_url)
    try:
        await client.signup(f"api{uuid.uuid4().hex[:10]}")
        csrf = await client._csrf("/accounts/api-tokens/")
        data = {"csrfmiddlewaretoken": csrf, "name": "live tests"}
        async with client.session.post(base_url + "/accounts/api-tokens/", data=data) as resp:
            assert resp.status == 200
            return SECRET.search(await resp.text()).group(1)
    finally:
        await client.close()


@pytest.fixture(scope="module")
def live(fake_anthropic):
    # Rate limits off: schemathesis sends a few hundred requests with one token.
    stack = FaultStack(
        anthropic_url=fake_anthropic.url, extra_env={"CHATSITE_API_RATE": "", "CHATSITE_API_SEND_RATE": ""}
    ).start()
    try:
        secret = asyncio.run(_signup_with_token(stack.url))
        yield Live(stack=stack, secret=secret)
    finally:
        stack.stop()


@pytest.fixture
async def http(live):
    async with aiohttp.ClientSession(headers=live.headers, timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


async def _conversation(http: aiohttp.ClientSession, base_url: str) -> int:
    async with http.post(base_url + "/api/v1/conversations", json={}) as resp:
        assert resp.status == 201, await resp.text()
        return (await resp.json())["id"]


async def _read(resp: aiohttp.ClientResponse, *, deltas: int | None = None) -> list[SSEEvent]:
    """Events until the final one, or until `deltas` delta events."""
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    parser, events = SSEParser(), []
    async for chunk in resp.content.iter_any():
        for event in parser.feed(chunk):
            events.append(event)
            if event.event in ("done", "error"):
                return events
            if deltas is not None and sum(e.event == "delta" for e in events) >= deltas:
                return events
    raise AssertionError(f"the stream ended without a final event: {[e.event for e in events]}")


def _words(n: int) -> str:
    return " ".join(f"v{i:04d}" for i in range(n))


async def test_reply_streams_as_sse_over_real_http(live, http, fake_anthropic):
    token = uuid.uuid4().hex
    text = _words(120)
    fake_anthropic.script([{"text": text, "tps": 150}], match=token)
    base = live.stack.url
    cid = await _conversation(http, base)
    async with http.post(f"{base}/api/v1/conversations/{cid}/messages/stream", json={"content": f"go {token}"}) as resp:
        assert resp.headers["Cache-Control"] == "no-cache"
        events = await _read(resp)
    assert events[0].event == "created"
    assert sum(e.event == "delta" for e in events) > 3, "deltas arrive in batches while Claude writes"
    assert apply_deltas(events) == text
    done = events[-1].json
    assert events[-1].event == "done" and done["status"] == "complete" and done["usage"]["output_tokens"] > 0
    assert live.stack.stored_replies()[-1] == (text, "complete")
    async with http.get(f"{base}/api/v1/conversations/{cid}/replies/{done['message_id']}") as resp:
        reply = await resp.json()
    assert reply["content"] == text and reply["cost"] == done["cost"]


async def test_dropped_client_reattaches_on_the_other_process(live, http, fake_anthropic):
    token = uuid.uuid4().hex
    text = _words(160)
    fake_anthropic.script([{"text": text, "tps": 60}], match=token)
    stack = live.stack
    cid = await _conversation(http, stack.url)
    async with http.post(f"{stack.url}/api/v1/conversations/{cid}/messages/stream", json={"content": f"go {token}"}) as resp:
        first = await _read(resp, deltas=2)
        resp.close()  # the client goes away mid-reply
    reply_id = first[0].json["reply"]["id"]
    have = apply_deltas(first)
    assert 0 < len(have) < len(text)

    # Process B does not run the reply: it follows process A's generation through Redis.
    async with http.get(f"{stack.second_url}/api/v1/conversations/{cid}/replies/{reply_id}/stream", params={"offset": len(have)}) as resp:
        rest = await _read(resp)
    assert rest[0].event == "delta" and rest[0].json["offset"] == len(have)
    assert sum(e.event == "delta" for e in rest) > 1, "followed live, not replayed from the database at the end"
    assert apply_deltas(rest, have) == text
    assert rest[-1].event == "done" and rest[-1].json["status"] == "complete"
    assert stack.stored_replies()[-1] == (text, "complete")


async def test_stop_sent_to_the_other_process_ends_the_stream(live, http, fake_anthropic):
    token = uuid.uuid4().hex
    text = _words(400)
    fake_anthropic.script([{"text": text, "tps": 60}], match=token)
    stack = live.stack
    cid = await _conversation(http, stack.url)
    async with http.post(f"{stack.url}/api/v1/conversations/{cid}/messages/stream", json={"content": f"go {token}"}) as resp:
        events = await _read(resp, deltas=1)
        reply_id = events[0].json["reply"]["id"]
        async with http.post(f"{stack.second_url}/api/v1/conversations/{cid}/replies/{reply_id}/stop") as stop:
            assert stop.status == 202
        events += await _read(resp)
    assert events[-1].event == "done" and events[-1].json["status"] == "stopped"
    stored_text, status = stack.stored_replies()[-1]
    assert status == "stopped" and apply_deltas(events) == stored_text and len(stored_text) < len(text)


async def test_send_and_wait_on_the_other_process(live, http, fake_anthropic):
    token = uuid.uuid4().hex
    fake_anthropic.script([{"text": "Answered on B.", "tps": 100}], match=token)
    cid = await _conversation(http, live.stack.url)
    async with http.post(f"{live.stack.second_url}/api/v1/conversations/{cid}/messages", json={"content": f"q {token}"}) as resp:
        assert resp.status == 201
        body = await resp.json()
    assert body["reply"]["content"] == "Answered on B." and body["reply"]["status"] == "complete"


# --- schemathesis ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api_schema(live):
    """The live schema; path ids are sometimes those of a real conversation and reply of the
    token's user, so the fuzzing reaches past the 404s."""
    base = live.stack.url
    with requests.Session() as session:
        session.headers.update(live.headers)
        cid = session.post(f"{base}/api/v1/conversations", json={}).json()["id"]
        sent = session.post(f"{base}/api/v1/conversations/{cid}/messages", json={"content": "hello from the schema test"}).json()
    real = {"conversation_id": cid, "message_id": sent["reply"]["id"]}
    schema = schemathesis.openapi.from_url(f"{base}/api/v1/openapi.json")

    @schema.hook
    def flatmap_path_parameters(context, path_parameters):
        if not path_parameters:
            return st.just(path_parameters)
        if context.operation.method.upper() == "DELETE":
            # Never the real conversation: deleting it would turn the rest of the run into 404s.
            kept = path_parameters.get("conversation_id") == cid
            return st.just({**path_parameters, "conversation_id": 2**62} if kept else path_parameters)
        mine = {name: real.get(name, value) for name, value in path_parameters.items()}
        return st.sampled_from([path_parameters, mine])

    return schema


# schemathesis's own pytest integration (`from_fixture`) does not run under pytest 9 (it sets
# `Function._nodeid`), so each operation gets a plain Hypothesis test from its strategy here.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = {GenerationMode.POSITIVE: 12, GenerationMode.NEGATIVE: 8}


def test_api_matches_its_schema_and_never_fails(api_schema, live):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 13
    failures: list[str] = []
    for operation in operations:
        for mode, examples in EXAMPLES.items():

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                      phases=[Phase.generate], suppress_health_check=list(HealthCheck))
            def check(case):
                case.call_and_validate(base_url=live.stack.url, headers=live.headers, timeout=60, checks=CHECKS)

            try:
                check()
            except Exception as exc:  # collect every operation's failure, then report them together
                failures.append(f"{operation.label} ({mode.value}):\n{exc}")
    assert not failures, "\n\n".join(failures)
