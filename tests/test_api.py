"""The HTTP API (/api/v1/) through the real ASGI handler, replies from the fake Anthropic server.

Transactional: the API reads and writes through its own database threads (asyncdb), which do
not see a test's open transaction.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest
from channels.db import database_sync_to_async as sync_to_async  # closes its connection after use
from django.test import AsyncClient

from accounts import tokens
from accounts.models import SpendLimit
from conversations import hub as hub_module
from conversations import services
from conversations.models import Conversation, LLMModel, Message, SystemPrompt
from tests.sse import SSEEvent, SSEParser, apply_deltas
from tests.conftest import clear_default_cache

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]

BASE = "/api/v1"


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    clear_default_cache()
    yield
    clear_default_cache()


def _key(user, name: str = "tests") -> str:
    return tokens.api_token_create(user=user, name=name)[1]


@pytest.fixture
def alice_key(alice) -> str:
    return _key(alice)


@pytest.fixture
def bob_key(bob) -> str:
    return _key(bob)


class Api:
    """An API client over Django's AsyncClient (the ASGI handler, middleware included)."""

    def __init__(self, key: str | None = None, client: AsyncClient | None = None, headers: dict[str, str] | None = None) -> None:
        self.client = client or AsyncClient()
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.headers.update(headers or {})

    async def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, **query: Any):
        kwargs: dict[str, Any] = {"headers": {**self.headers, **(headers or {})}}
        if method in ("post", "patch"):
            kwargs["data"] = body if isinstance(body, (str, bytes)) else json.dumps(body if body is not None else {})
            kwargs["content_type"] = "application/json"
        elif query:
            kwargs["data"] = query
        return await getattr(self.client, method)(BASE + path, **kwargs)

    async def get(self, path: str, **query: Any):
        return await self.call("get", path, **query)

    async def post(self, path: str, body: Any = None, **kw: Any):
        return await self.call("post", path, body, **kw)

    async def patch(self, path: str, body: Any = None):
        return await self.call("patch", path, body)

    async def delete(self, path: str):
        return await self.call("delete", path)

    async def new_conversation(self, **body: Any) -> int:
        response = await self.post("/conversations", body)
        assert response.status_code == 201, response.content
        return response.json()["id"]


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.content)
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    return error


async def _events(response, *, stop: Any = None, timeout: float = 20) -> list[SSEEvent]:
    """Read an SSE response until its final event (or until `stop(events)` is true)."""
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/event-stream")
    parser, events = SSEParser(), []

    async def read() -> None:
        async for chunk in response.streaming_content:
            for event in parser.feed(chunk):
                events.append(event)
                if event.event in ("done", "error") or (stop is not None and stop(events)):
                    return

    await asyncio.wait_for(read(), timeout)
    return events


def _deltas(events: list[SSEEvent]) -> int:
    return sum(1 for e in events if e.event == "delta")


async def _disconnect_after(response, deltas: int) -> list[SSEEvent]:
    """Read until `deltas` delta events, then drop the connection as a client would: Django cancels
    the task streaming the response."""
    parser, events = SSEParser(), []

    async def read() -> None:
        async for chunk in response.streaming_content:
            events.extend(parser.feed(chunk))

    task = asyncio.get_running_loop().create_task(read())
    for _ in range(400):
        if _deltas(events) >= deltas:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _deltas(events) >= deltas
    return events


async def _wait_stored(message_id: int, timeout: float = 20) -> Message:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        message = await sync_to_async(Message.objects.get)(pk=message_id)
        if message.status != Message.Status.STREAMING or loop.time() > deadline:
            return message
        await asyncio.sleep(0.05)


def _run_of(generation_id: str):
    return hub_module._hubs[id(asyncio.get_running_loop())].get(generation_id)


# --- auth ------------------------------------------------------------------------------------


async def test_requests_without_credentials_are_refused_with_401(alice):
    response = await Api().get("/conversations")
    _error(response, 401, "unauthenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer chs_not-a-real-token", "Bearer ", "Token abc", "Basic YWxpY2U6cGFzcw=="])
async def test_unknown_tokens_and_other_schemes_are_401(alice, alice_key, header):
    _error(await Api(headers={"Authorization": header}).get("/conversations"), 401, "unauthenticated")


async def test_revoked_token_stops_working_and_another_keeps_working(alice):
    token, secret = await sync_to_async(tokens.api_token_create)(user=alice, name="old laptop")
    other = await sync_to_async(_key)(alice, "desktop")
    assert (await Api(secret).get("/conversations")).status_code == 200
    assert await sync_to_async(tokens.api_token_revoke)(user=alice, token_id=token.pk)
    _error(await Api(secret).get("/conversations"), 401, "unauthenticated")
    assert (await Api(other).get("/conversations")).status_code == 200


async def test_token_of_a_deactivated_user_is_refused(alice, alice_key):
    await sync_to_async(type(alice).objects.filter(pk=alice.pk).update)(is_active=False)
    _error(await Api(alice_key).get("/conversations"), 401, "unauthenticated")


async def test_token_use_is_recorded_at_most_once_a_minute(alice, alice_key):
    from accounts.models import ApiToken

    assert (await Api(alice_key).get("/models")).status_code == 200
    first = (await sync_to_async(ApiToken.objects.get)(user=alice)).last_used_at
    assert first is not None
    assert (await Api(alice_key).get("/models")).status_code == 200
    assert (await sync_to_async(ApiToken.objects.get)(user=alice)).last_used_at == first


async def test_browser_session_reads_and_needs_csrf_for_writes(alice):
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(alice)
    session = Api(client=client)
    assert (await session.get("/conversations")).status_code == 200
    _error(await session.post("/conversations", {}), 403, "csrf_failed")
    await client.get("/accounts/api-tokens/")  # any page with a form sets the CSRF cookie
    csrf = client.cookies["csrftoken"].value
    response = await session.post("/conversations", {}, headers={"X-CSRFToken": csrf})
    assert response.status_code == 201


async def test_a_bad_token_never_falls_back_to_the_session_cookie(alice):
    client = AsyncClient()
    await client.aforce_login(alice)
    _error(await Api("chs_wrong", client=client).get("/conversations"), 401, "unauthenticated")


async def test_bearer_requests_need_no_csrf_token(alice, alice_key):
    client = AsyncClient(enforce_csrf_checks=True)
    response = await Api(alice_key, client=client).post("/conversations", {})
    assert response.status_code == 201


# --- conversations ---------------------------------------------------------------------------


async def test_create_list_get_rename_delete_a_conversation(alice, alice_key):
    api = Api(alice_key)
    prompt = await sync_to_async(SystemPrompt.objects.create)(name="Pirate", text="Talk like a pirate.")
    response = await api.post("/conversations", {"model": "claude-haiku-5-5", "prompt_id": prompt.pk, "title": "  Ahoy   there "})
    assert response.status_code == 201
    created = response.json()
    assert created["model"] == "claude-haiku-5-5" and created["prompt_id"] == prompt.pk and created["title"] == "Ahoy there"
    cid = created["id"]

    detail = (await api.get(f"/conversations/{cid}")).json()
    assert detail["system_prompt"] == "Talk like a pirate." and detail["messages"] == [] and not detail["is_generating"]

    renamed = await api.patch(f"/conversations/{cid}", {"title": "Treasure"})
    assert renamed.status_code == 200 and renamed.json()["title"] == "Treasure"
    listed = (await api.get("/conversations")).json()
    assert [c["title"] for c in listed["items"]] == ["Treasure"] and listed["count"] == 1

    assert (await api.delete(f"/conversations/{cid}")).status_code == 204
    assert not await sync_to_async(Conversation.objects.filter(pk=cid).exists)()
    _error(await api.get(f"/conversations/{cid}"), 404, "not_found")


async def test_conversation_list_is_paginated_newest_first(alice, alice_key):
    api = Api(alice_key)
    ids = [await api.new_conversation() for _ in range(5)]
    first = (await api.get("/conversations", limit=2)).json()
    assert [c["id"] for c in first["items"]] == ids[::-1][:2]
    assert first["count"] == 5 and first["next_offset"] == 2
    last = (await api.get("/conversations", limit=2, offset=4)).json()
    assert [c["id"] for c in last["items"]] == [ids[0]] and last["next_offset"] is None
    _error(await api.get("/conversations", limit=0), 400, "invalid_request")
    _error(await api.get("/conversations", limit=101), 400, "invalid_request")


async def test_new_conversation_refuses_unknown_model_and_prompt(alice, alice_key):
    api = Api(alice_key)
    _error(await api.post("/conversations", {"model": "gpt-nope"}), 400, "bad_model")
    _error(await api.post("/conversations", {"prompt_id": 999999}), 400, "bad_preset")


async def test_rename_to_blank_is_refused(alice, alice_key):
    api = Api(alice_key)
    cid = await api.new_conversation()
    _error(await api.patch(f"/conversations/{cid}", {"title": "   "}), 400, "empty")


async def test_other_users_objects_are_404_everywhere(llm, token, alice, alice_key, bob, bob_key):
    llm.script([{"text": "alice's secret answer"}], match=token)
    alice_api = Api(alice_key)
    cid = await alice_api.new_conversation()
    sent = (await alice_api.post(f"/conversations/{cid}/messages", {"content": f"hi {token}"})).json()
    rid = sent["reply"]["id"]

    bob_api = Api(bob_key)
    assert (await bob_api.get("/conversations")).json()["items"] == []
    for response in (
        await bob_api.get(f"/conversations/{cid}"),
        await bob_api.patch(f"/conversations/{cid}", {"title": "mine now"}),
        await bob_api.delete(f"/conversations/{cid}"),
        await bob_api.post(f"/conversations/{cid}/messages", {"content": "hello"}),
        await bob_api.post(f"/conversations/{cid}/messages/stream", {"content": "hello"}),
        await bob_api.get(f"/conversations/{cid}/replies/{rid}"),
        await bob_api.get(f"/conversations/{cid}/replies/{rid}/stream"),
        await bob_api.post(f"/conversations/{cid}/replies/{rid}/stop"),
    ):
        error = _error(response, 404, "not_found")
        assert "secret" not in json.dumps(error)
    # A reply id of Alice's under Bob's own conversation is no way in either.
    bobs = await bob_api.new_conversation()
    _error(await bob_api.get(f"/conversations/{bobs}/replies/{rid}"), 404, "not_found")
    conversation = await sync_to_async(Conversation.objects.get)(pk=cid)
    assert conversation.title != "mine now"
    assert await sync_to_async(Message.objects.filter(conversation_id=cid).count)() == 2


async def test_invalid_requests_get_json_errors(alice, alice_key):
    api = Api(alice_key)
    cid = await api.new_conversation()
    _error(await api.post(f"/conversations/{cid}/messages", "{not json"), 400, "bad_request")
    error = _error(await api.post(f"/conversations/{cid}/messages", {}), 400, "invalid_request")
    assert error["details"][0]["loc"][-1] == "content"
    _error(await api.post(f"/conversations/{cid}/messages", {"content": 42}), 400, "invalid_request")
    _error(await api.get("/conversations/0"), 400, "invalid_request")
    _error(await api.get(f"/conversations/{2**70}"), 400, "invalid_request")
    _error(await api.get("/conversations/abc"), 400, "invalid_request")
    _error(await api.get("/no/such/thing"), 404, "not_found")
    response = await api.call("put", "/conversations")
    _error(response, 405, "method_not_allowed")
    assert "POST" in response["Allow"]


# --- sending ---------------------------------------------------------------------------------


async def test_send_waits_for_the_whole_reply(llm, token, alice, alice_key):
    text = "Hello **there**, " * 10
    llm.script([{"text": text, "tps": 300}], match=token)
    api = Api(alice_key)
    cid = await api.new_conversation()
    response = await api.post(f"/conversations/{cid}/messages", {"content": f"hi {token}"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["user_message"]["content"] == f"hi {token}" and body["user_message"]["role"] == "user"
    reply = body["reply"]
    assert reply["status"] == "complete" and reply["content"] == text  # raw Markdown, not HTML
    assert reply["usage"]["input_tokens"] > 0 and reply["usage"]["output_tokens"] > 0
    assert Decimal(reply["cost"]) > 0
    assert reply["parent_id"] == body["user_message"]["id"]
    stored = await sync_to_async(Message.objects.get)(pk=reply["id"])
    assert stored.content == text and str(stored.cost) == reply["cost"]
    detail = (await api.get(f"/conversations/{cid}")).json()
    assert [m["id"] for m in detail["messages"]] == [body["user_message"]["id"], reply["id"]]
    assert detail["title"]  # named after the first message


async def test_send_refusals_have_their_status(llm, token, alice, alice_key, settings):
    api = Api(alice_key)
    cid = await api.new_conversation()
    before = len(llm.requests())
    _error(await api.post(f"/conversations/{cid}/messages", {"content": "   "}), 400, "empty")
    settings.CHATSITE_MAX_INPUT_CHARS = 20
    _error(await api.post(f"/conversations/{cid}/messages", {"content": "x" * 21}), 413, "too_long")
    _error(await api.post(f"/conversations/{cid}/messages/stream", {"content": "x" * 21}), 413, "too_long")
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    _error(await api.post(f"/conversations/{cid}/messages", {"content": "y" * 200}), 413, "too_large")
    assert len(llm.requests()) == before  # refused before any call to Claude


async def test_over_budget_is_402(llm, token, alice, alice_key):
    await sync_to_async(SpendLimit.objects.create)(user=alice, monthly_limit=Decimal("0"))
    api = Api(alice_key)
    cid = await api.new_conversation()
    error = _error(await api.post(f"/conversations/{cid}/messages", {"content": f"hi {token}"}), 402, "over_budget")
    assert "budget" in error["message"]


async def test_second_send_while_a_reply_runs_is_409(llm, token, alice, alice_key):
    llm.script([{"text": "slow " * 60, "tps": 60}], match=token)
    api = Api(alice_key)
    cid = await api.new_conversation()
    stream = await api.post(f"/conversations/{cid}/messages/stream", {"content": f"go {token}"})
    events = await _events(stream, stop=lambda ev: _deltas(ev) >= 1)
    _error(await api.post(f"/conversations/{cid}/messages", {"content": "and another"}), 409, "busy")
    _error(await api.post(f"/conversations/{cid}/messages/stream", {"content": "and another"}), 409, "busy")
    await _wait_stored(events[0].json["reply"]["id"])


async def test_upstream_failure_is_502_and_keeps_the_message(llm, token, alice, alice_key):
    llm.script([{"status": 400, "error_type": "invalid_request_error", "message": "bad"}], match=token)
    api = Api(alice_key)
    cid = await api.new_conversation()
    error = _error(await api.post(f"/conversations/{cid}/messages", {"content": f"hi {token}"}), 502, "invalid_request")
    reply = await sync_to_async(Message.objects.get)(pk=error["message_id"])
    assert reply.status == Message.Status.ERROR and reply.conversation_id == cid
    assert "Traceback" not in error["message"]


async def test_overloaded_upstream_is_503_with_retry_after(llm, token, alice, alice_key, settings):
    settings.CHATSITE_RETRY_BUDGET_SECONDS = 0.2
    llm.script([{"status": 529, "retry_after_ms": 10, "repeat": 50}], match=token)
    api = Api(alice_key)
    cid = await api.new_conversation()
    response = await api.post(f"/conversations/{cid}/messages", {"content": f"hi {token}"})
    _error(response, 503, "overloaded")
    assert int(response["Retry-After"]) > 0


# --- streaming -------------------------------------------------------------------------------


async def test_send_streams_the_reply_as_server_sent_events(llm, token, alice, alice_key):
    text = "Streaming, one batch at a time. " * 12
    llm.script([{"text": text, "tps": 250}], match=token)
    api = Api(alice_key)
    cid = await api.new_conversation()
    response = await api.post(f"/conversations/{cid}/messages/stream", {"content": f"stream {token}"})
    assert response["Cache-Control"] == "no-cache"
    events = await _events(response)
    assert events[0].event == "created"
    created = events[0].json
    assert created["user_message"]["content"] == f"stream {token}" and created["reply"]["status"] == "streaming"
    assert _deltas(events) > 1, "the reply should arrive in several batches"
    assert apply_deltas(events) == text
    done = events[-1]
    assert done.event == "done" and [e.event for e in events].count("done") == 1
    final = done.json
    assert final["message_id"] == created["reply"]["id"] and final["status"] == "complete"
    assert final["generation_id"] == created["reply"]["generation_id"]
    assert final["usage"]["output_tokens"] > 0 and Decimal(final["cost"]) > 0 and final["content_length"] == len(text)
    stored = await sync_to_async(Message.objects.get)(pk=final["message_id"])
    assert stored.content == text and str(stored.cost) == final["cost"]


async def test_failed_reply_ends_the_stream_with_an_error_event(llm, token, alice, alice_key):
    llm.script([{"text": "one two three four five six", "cut_after": 3, "tps": 100}], match=token)
    api = Api(alice_key)
    cid = await api.new_conversation()
    events = await _events(await api.post(f"/conversations/{cid}/messages/stream", {"content": f"cut {token}"}))
    assert apply_deltas(events) == "one two three "
    error = events[-1]
    assert error.event == "error"
    assert error.json["code"] == "stream_cut" and error.json["status"] == "error" and error.json["message"]


async def test_disconnecting_leaves_the_reply_running_and_it_can_be_reattached(llm, token, alice, alice_key):
    text = " ".join(f"w{i:03d}" for i in range(120))
    llm.script([{"text": text, "tps": 120}], match=token)
    api = Api(alice_key)
    cid = await api.new_conversation()
    response = await api.post(f"/conversations/{cid}/messages/stream", {"content": f"go {token}"})
    events = await _disconnect_after(response, deltas=2)
    reply = events[0].json["reply"]
    have = apply_deltas(events)
    run = _run_of(reply["generation_id"])
    assert run is not None and not run.done, "the reply goes on without its client"
    assert run.followers == set(), "the gone client was unfollowed"

    again = await api.get(f"/conversations/{cid}/replies/{reply['id']}/stream", offset=len(have))
    rest = await _events(again)
    assert rest[0].json["offset"] == len(have)
    assert apply_deltas(rest, have) == text
    assert rest[-1].event == "done" and rest[-1].json["status"] == "complete"
    assert (await _wait_stored(reply["id"])).content == text


async def test_reattaching_to_a_finished_reply_sends_the_rest_and_the_end(llm, token, alice, alice_key):
    llm.script([{"text": "A finished answer."}], match=token)
    api = Api(alice_key)
    cid = await api.new_conversation()
    reply = (await api.post(f"/conversations/{cid}/messages", {"content": f"q {token}"})).json()["reply"]
    path = f"/conversations/{cid}/replies/{reply['id']}/stream"
    events = await _events(await api.get(path, offset=2))
    assert [e.event for e in events] == ["delta", "done"]
    assert events[0].json == {"offset": 2, "text": "finished answer."}
    # Without `offset`, an SSE client's Last-Event-ID says what it has.
    events = await _events(await api.call("get", path, headers={"Last-Event-ID": "9"}))
    assert events[0].json["offset"] == 9 and apply_deltas(events, "A finished answer."[:9]) == "A finished answer."
    assert [e.event for e in await _events(await api.get(path, offset=500))] == ["done"]


async def test_reattaching_to_a_reply_of_a_dead_process_ends_once_the_reaper_marks_it(alice, alice_key, monkeypatch):
    from conversations.api import streaming

    monkeypatch.setattr(streaming, "POLL_SECONDS", 0.05)
    conversation = await sync_to_async(services.conversation_create)(owner=alice)
    question = await sync_to_async(Message.objects.create)(conversation=conversation, role="user", content="q")
    reply = await sync_to_async(Message.objects.create)(
        conversation=conversation, parent=question, role="assistant", status=Message.Status.STREAMING,
        content="the checkpointed part", generation_id=Message.new_generation_id(), runner="specific.deadprocess!gone",
    )
    response = await Api(alice_key).get(f"/conversations/{conversation.pk}/replies/{reply.pk}/stream", offset=4)
    reading = asyncio.get_running_loop().create_task(_events(response))
    await asyncio.sleep(0.3)
    assert not reading.done(), "still streaming: the stream waits for the runner"
    assert await sync_to_async(services.generations_mark_interrupted)(stale_after=0) == 1
    events = await reading
    assert apply_deltas(events, "the ") == "the checkpointed part"
    assert events[-1].event == "error" and events[-1].json["code"] == "interrupted"


async def test_stop_ends_the_reply_keeping_its_text(llm, token, alice, alice_key):
    llm.script([{"text": "word " * 300, "tps": 60}], match=token)
    api = Api(alice_key)
    cid = await api.new_conversation()
    response = await api.post(f"/conversations/{cid}/messages/stream", {"content": f"go {token}"})
    first = await _events(response, stop=lambda ev: _deltas(ev) >= 1)
    reply_id = first[0].json["reply"]["id"]

    live = (await api.get(f"/conversations/{cid}/replies/{reply_id}")).json()
    assert live["status"] == "streaming" and live["content"].startswith("word")

    stopped = await api.post(f"/conversations/{cid}/replies/{reply_id}/stop")
    assert stopped.status_code == 202 and stopped.json() == {"message_id": reply_id, "status": "stopping"}
    rest = await _events(response)
    assert rest[-1].event == "done" and rest[-1].json["status"] == "stopped"
    stored = await _wait_stored(reply_id)
    assert stored.status == Message.Status.STOPPED
    assert apply_deltas(first + rest) == stored.content and 0 < len(stored.content) < len("word " * 300)
    _error(await api.post(f"/conversations/{cid}/replies/{reply_id}/stop"), 409, "not_running")
    assert (await api.get(f"/conversations/{cid}/replies/{reply_id}")).json()["status"] == "stopped"


async def test_deleting_a_conversation_stops_its_running_reply(llm, token, alice, alice_key):
    llm.script([{"text": "word " * 300, "tps": 60}], match=token)
    api = Api(alice_key)
    cid = await api.new_conversation()
    response = await api.post(f"/conversations/{cid}/messages/stream", {"content": f"go {token}"})
    first = await _events(response, stop=lambda ev: _deltas(ev) >= 1)
    gid = first[0].json["reply"]["generation_id"]
    assert (await api.delete(f"/conversations/{cid}")).status_code == 204
    for _ in range(200):
        if _run_of(gid) is None:
            break
        await asyncio.sleep(0.02)
    assert _run_of(gid) is None, "the reply should have been stopped"


# --- catalogue, usage, limits, schema ---------------------------------------------------------


async def test_models_and_prompts_list_what_may_be_used(alice, alice_key):
    await sync_to_async(LLMModel.objects.filter(model_id="claude-haiku-5-5").update)(enabled=False)
    await sync_to_async(SystemPrompt.objects.create)(name="Retired", text="old", is_active=False)
    await sync_to_async(SystemPrompt.objects.create)(name="Helpful", text="Be helpful.")
    api = Api(alice_key)
    models = (await api.get("/models")).json()
    ids = [m["id"] for m in models]
    assert ids and "claude-haiku-5-5" not in ids
    assert sum(m["is_default"] for m in models) == 1
    assert Decimal(models[0]["prices"]["input"]) > 0
    prompts = (await api.get("/prompts")).json()
    assert "Helpful" in [p["name"] for p in prompts] and "Retired" not in [p["name"] for p in prompts]


async def test_usage_reports_this_months_spend_and_budget(llm, token, alice, alice_key, bob, bob_key):
    llm.script([{"text": "Worth every token."}], match=token)
    await sync_to_async(SpendLimit.objects.create)(user=alice, monthly_limit=Decimal("5.00"))
    api = Api(alice_key)
    cid = await api.new_conversation()
    reply = (await api.post(f"/conversations/{cid}/messages", {"content": f"q {token}"})).json()["reply"]
    report = (await api.get("/usage")).json()
    assert report["total"]["calls"] >= 1 and Decimal(report["total"]["cost"]) >= Decimal(reply["cost"]) > 0
    assert report["by_model"][0]["kind"] == "reply" and report["by_model"][0]["model"] == reply["model"]
    assert report["budget"]["limit"] == "5.00" and not report["budget"]["exhausted"]
    assert Decimal(report["budget"]["remaining"]) == Decimal("5.00") - Decimal(report["budget"]["spent"])
    assert len(report["days"]) == 30
    theirs = (await Api(bob_key).get("/usage")).json()
    assert theirs["total"]["calls"] == 0 and theirs["budget"]["limit"] is None


async def test_rate_limit_is_per_token_with_retry_after(alice, settings):
    settings.CHATSITE_API_RATE = "3/m"
    first, second = await sync_to_async(_key)(alice, "one"), await sync_to_async(_key)(alice, "two")
    for _ in range(3):
        assert (await Api(first).get("/models")).status_code == 200
    response = await Api(first).get("/models")
    _error(response, 429, "rate_limited")
    assert 0 < int(response["Retry-After"]) <= 60
    assert (await Api(second).get("/models")).status_code == 200


async def test_rate_limit_windows_live_in_redis_shared_by_every_process(alice, settings):
    """Several daphne processes serve one site: a window kept in one process's memory would
    let each process grant the full rate. The window is in Redis, where any process reads it."""
    import redis

    settings.CHATSITE_API_RATE = "2/m"
    key = await sync_to_async(_key)(alice, "shared")
    for _ in range(2):
        assert (await Api(key).get("/models")).status_code == 200
    client = redis.Redis.from_url(settings.REDIS_URL)  # not this process's cache object
    stored = [k for k in client.scan_iter(match=f"{settings.CACHE_KEY_PREFIX}:*chatsite-api:requests:*")]
    assert len(stored) == 1
    _error(await Api(key).get("/models"), 429, "rate_limited")


async def test_sends_have_their_own_tighter_limit(llm, token, alice, alice_key, settings):
    settings.CHATSITE_API_SEND_RATE = "1/m"
    llm.script([{"text": "once"}], match=token)
    api = Api(alice_key)
    cid = await api.new_conversation()
    assert (await api.post(f"/conversations/{cid}/messages", {"content": f"q {token}"})).status_code == 201
    _error(await api.post(f"/conversations/{cid}/messages/stream", {"content": "again"}), 429, "rate_limited")
    assert (await api.get(f"/conversations/{cid}")).status_code == 200


async def test_openapi_schema_and_docs_are_served_without_a_cdn(alice):
    client = AsyncClient()
    schema = (await client.get(f"{BASE}/openapi.json")).json()
    assert schema["info"]["title"] == "Chatsite API"
    paths = schema["paths"]
    assert "/api/v1/conversations/{conversation_id}/messages/stream" in paths
    assert "text/event-stream" in paths["/api/v1/conversations/{conversation_id}/replies/{message_id}/stream"]["get"]["responses"]["200"]["content"]
    assert schema["components"]["securitySchemes"]["TokenAuth"] == {"type": "http", "scheme": "bearer"}
    assert paths["/api/v1/conversations/{conversation_id}/messages"]["post"]["operationId"] == "message_send"
    docs = (await client.get(f"{BASE}/docs")).content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    bundle = await client.get("/static/ninja/swagger-ui-bundle.js")
    assert bundle.status_code == 200
