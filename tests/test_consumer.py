"""The chat websocket against the fake Anthropic server, through the real SDK over HTTP."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from conversations import services
from conversations.models import Message
from tests.conftest import Socket, stored_message

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]




async def test_reply_streams_over_websocket_and_is_stored(llm, token, alice, conversation):
    text = "Hello **there**. " * 20
    llm.script([{"text": text, "tps": 200}], match=token)
    sock = Socket(alice, conversation.pk)
    assert (await sock.connect())[0]

    created = await sock.send_message(f"hi {token}")
    gid = created["reply"]["generation_id"]
    assert created["user_message"]["role"] == "user"
    assert created["reply"]["status"] == "streaming"

    streamed, end = await sock.follow_to_end(gid)
    deltas = [f for f in sock.frames if f["type"] == "delta"]
    assert len(deltas) > 1, "the reply should arrive in several batches, not at once"
    assert streamed == text
    assert end["message"]["status"] == "complete"
    assert "<strong>there</strong>" in end["message"]["html"]

    reply = await stored_message(created["reply"]["id"])
    assert reply.content == text
    assert reply.status == Message.Status.COMPLETE
    assert reply.input_tokens > 0 and reply.output_tokens > 0
    user_message = await stored_message(created["user_message"]["id"])
    assert user_message.content == f"hi {token}"
    assert reply.parent_id == user_message.pk
    await sock.close()


async def test_history_and_system_prompt_reach_claude(llm, token, alice, conversation):
    await sync_to_async(type(conversation).objects.filter(pk=conversation.pk).update)(system_prompt="Be terse.")
    llm.script([{"text": "first answer"}], match=f"one {token}")
    llm.script([{"text": "second answer"}], match=f"two {token}")
    sock = Socket(alice, conversation.pk)
    await sock.connect()
    created = await sock.send_message(f"one {token}")
    await sock.follow_to_end(created["reply"]["generation_id"])
    created = await sock.send_message(f"two {token}", client_id="c2")
    await sock.follow_to_end(created["reply"]["generation_id"])

    body = [r["body"] for r in llm.requests() if f"two {token}" in str(r["body"]["messages"])][-1]
    # Too short to cache (below the model's minimum): a plain block, no breakpoint.
    assert body["system"] == [{"type": "text", "text": "Be terse."}]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == "first answer"
    await sock.close()


async def test_two_sockets_on_one_conversation_both_get_the_whole_reply(llm, token, alice, conversation):
    text = "Both tabs see every word of this reply. " * 10
    llm.script([{"text": text, "tps": 300}], match=token)
    tab1, tab2 = Socket(alice, conversation.pk), Socket(alice, conversation.pk)
    await tab1.connect()
    await tab2.connect()
    created = await tab1.send_message(f"go {token}")
    gid = created["reply"]["generation_id"]
    other = await tab2.receive_type("message.created")
    assert other["user_message"]["text"] == f"go {token}"
    results = await asyncio.gather(tab1.follow_to_end(gid), tab2.follow_to_end(gid))
    for streamed, end in results:
        assert streamed == text
        assert end["message"]["status"] == "complete"
    ends = [f for f in tab2.frames if f["type"] == "generation.end"]
    assert len(ends) == 1, "exactly one final frame per socket"
    await tab1.close()
    await tab2.close()


async def test_second_send_while_a_reply_is_streaming_is_refused(llm, token, alice, conversation):
    llm.script([{"text": "slow " * 40, "tps": 40}], match=token)
    sock = Socket(alice, conversation.pk)
    await sock.connect()
    created = await sock.send_message(f"first {token}")
    await sock.send({"type": "send", "content": "second", "client_id": "c2"})
    error = await sock.receive_type("error")
    assert error["code"] == "busy" and error["client_id"] == "c2"
    await sock.follow_to_end(created["reply"]["generation_id"])
    count = await sync_to_async(Message.objects.filter(conversation=conversation, role="user").count)()
    assert count == 1
    await sock.close()


async def test_stop_keeps_the_partial_and_marks_it_stopped(llm, token, alice, conversation):
    llm.script([{"text": "word " * 400, "tps": 50}], match=token)
    tab1, tab2 = Socket(alice, conversation.pk), Socket(alice, conversation.pk)
    await tab1.connect()
    await tab2.connect()
    created = await tab1.send_message(f"go {token}")
    gid = created["reply"]["generation_id"]
    while not any(f["type"] == "delta" for f in tab1.frames):
        await tab1.receive()
    await tab2.send({"type": "stop", "generation_id": gid})  # from the other tab
    streamed, end = await tab1.follow_to_end(gid)
    assert end["message"]["status"] == "stopped"
    reply = await stored_message(created["reply"]["id"])
    assert reply.status == Message.Status.STOPPED
    assert reply.content == streamed
    assert 0 < len(reply.content) < len("word " * 400)
    await tab1.close()
    await tab2.close()


async def test_upstream_failure_keeps_the_persons_message_and_explains(llm, token, alice, conversation):
    llm.script([{"status": 500, "repeat": 20}], match=token)
    sock = Socket(alice, conversation.pk)
    await sock.connect()
    created = await sock.send_message(f"please {token}")
    _, end = await sock.follow_to_end(created["reply"]["generation_id"], timeout=40)
    assert end["message"]["status"] == "error"
    assert end["message"]["error_code"] == "upstream_error"
    assert "internal error" in end["message"]["error"]
    assert "Traceback" not in end["message"]["error"] and "500" not in end["message"]["error"]
    user_message = await stored_message(created["user_message"]["id"])
    assert user_message.content == f"please {token}"
    await sock.close()


async def test_stream_cut_midway_keeps_the_partial(llm, token, alice, conversation):
    llm.script([{"text": "one two three four five six seven eight", "cut_after": 3, "tps": 100}], match=token)
    sock = Socket(alice, conversation.pk)
    await sock.connect()
    created = await sock.send_message(f"cut {token}")
    streamed, end = await sock.follow_to_end(created["reply"]["generation_id"])
    assert streamed == "one two three "
    assert end["message"]["status"] == "error"
    assert end["message"]["error_code"] == "stream_cut"
    reply = await stored_message(created["reply"]["id"])
    assert reply.content == "one two three "
    await sock.close()


async def test_rate_limit_then_success_is_retried_transparently(llm, token, alice, conversation):
    llm.script([{"status": 429, "retry_after_ms": 20}, {"text": "after the retry"}], match=token)
    sock = Socket(alice, conversation.pk)
    await sock.connect()
    created = await sock.send_message(f"retry {token}")
    streamed, end = await sock.follow_to_end(created["reply"]["generation_id"])
    assert streamed == "after the retry"
    assert end["message"]["status"] == "complete"
    await sock.close()


async def test_oversized_input_is_refused_before_any_call(llm, token, alice, conversation, settings):
    settings.CHATSITE_MAX_INPUT_CHARS = 50
    before = len(llm.requests())
    sock = Socket(alice, conversation.pk)
    await sock.connect()
    await sock.send({"type": "send", "content": "x" * 51 + token, "client_id": "big"})
    error = await sock.receive_type("error")
    assert error["code"] == "too_long" and error["client_id"] == "big"
    assert len(llm.requests()) == before
    assert await sync_to_async(Message.objects.filter(conversation=conversation).count)() == 0
    await sock.close()


async def test_anonymous_socket_is_rejected(alice, conversation):
    sock = Socket(None, conversation.pk)
    connected, code = await sock.connect()
    assert not connected and code == 4401


async def test_other_user_cannot_open_the_conversation_socket(bob, conversation):
    sock = Socket(bob, conversation.pk)
    connected, code = await sock.connect()
    assert not connected and code == 4404


async def test_socket_from_a_foreign_origin_is_rejected(alice, conversation):
    sock = Socket(alice, conversation.pk, origin="http://evil.example")
    connected, _ = await sock.connect()
    assert not connected


async def test_other_user_cannot_follow_or_stop_a_generation(llm, token, alice, bob, conversation):
    llm.script([{"text": "secret " * 50, "tps": 100}], match=token)
    sock = Socket(alice, conversation.pk)
    await sock.connect()
    created = await sock.send_message(f"go {token}")
    gid = created["reply"]["generation_id"]
    bobs = await sync_to_async(services.conversation_create)(owner=bob)
    intruder = Socket(bob, bobs.pk)
    await intruder.connect()
    await intruder.send({"type": "follow", "generation_id": gid, "offset": 0})
    await intruder.send({"type": "stop", "generation_id": gid})
    errors = [await intruder.receive_type("error"), await intruder.receive_type("error")]
    assert {e["code"] for e in errors} == {"not_found", "not_running"}
    _, end = await sock.follow_to_end(gid)
    assert end["message"]["status"] == "complete"
    assert not any("secret" in str(f) for f in intruder.frames)
    await sock.close()
    await intruder.close()
