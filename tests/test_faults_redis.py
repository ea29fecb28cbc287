"""Redis fails (killed and restarted empty, or hung): replies go on, sockets stay, nothing is lost.

A private redis-server (tests/faultkit.py) serves the channel layer, the caches and Celery of
two real daphne processes. A reply runs on process A; one socket follows it on A, another on B
(through Redis). While Redis is away, A's socket keeps getting the reply, no socket is closed,
pages and log-ins work; when Redis is back (no process restarted), B's socket gets whatever it
missed and exactly one end, and sending works again across processes.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

from tests.faultkit import FaultStack, PrivateRedis
from tests.wsclient import ChatClient, ProtocolSocket

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis (make test provides it)"),
]


@pytest.fixture
def redis_server():
    server = PrivateRedis().start()
    yield server
    server.destroy()


@pytest.fixture
def stack(fake_anthropic, redis_server):
    stack = FaultStack(anthropic_url=fake_anthropic.url, redis_url=redis_server.url()).start()
    yield stack
    stack.stop()


def _words(n: int, tag: str) -> str:
    return " ".join(f"{tag}{i:03d}" for i in range(n))


async def _reply_on_a_followed_on_b(stack, fake_anthropic, text: str, tps: float):
    token = uuid.uuid4().hex[:10]
    fake_anthropic.script([{"text": text, "tps": tps}], match=f"go {token}.")
    client = ChatClient(stack.url)
    username = f"r{token}"
    await client.signup(username)
    conversation = await client.new_conversation()
    on_a = await ProtocolSocket.open(client, conversation, stack.urls[0])
    on_b = await ProtocolSocket.open(client, conversation, stack.urls[1])
    since = len(on_a.frames)
    await on_a.send({"type": "send", "content": f"go {token}.", "client_id": "go"})
    gid = (await on_a.first("message.created", since, client_id="go"))["reply"]["generation_id"]
    await on_b.wait(lambda: len(on_b.texts.get(gid, "")) > 20, what="B following")
    return client, username, conversation, on_a, on_b, gid


async def _still_serving(stack, username: str, conversation: int) -> None:
    """Pages and log-ins on both processes while Redis is away (the caches fall back)."""
    for base in stack.urls:
        other = ChatClient(base)
        try:
            assert await other.login(username) == 302, f"log-in on {base}"
            async with other.session.get(base + f"/chat/{conversation}/") as response:
                assert response.status == 200, f"page on {base}: {response.status}"
        finally:
            await other.close()


async def _sending_works_across_processes(client, conversation, on_a, on_b, fake_anthropic) -> None:
    # Each process tells its sockets when it sees Redis back (a second `hello`: what a client
    # missed meanwhile it reloads, see docs/protocol.md); from then on the groups work again.
    for sock in (on_a, on_b):
        await sock.wait(lambda s=sock: s.hellos >= 2, timeout=10, what="hello again after the outage")
    token = uuid.uuid4().hex[:10]
    fake_anthropic.script([{"text": "after the outage " + token}], match=f"again {token}.")
    since_a, since_b = len(on_a.frames), len(on_b.frames)
    await on_b.send({"type": "send", "content": f"again {token}.", "client_id": "again"})
    created = await on_b.first("message.created", since_b, client_id="again")
    gid = created["reply"]["generation_id"]
    # Announced to the socket on the other process (the groups are back), which follows it.
    await on_a.first("message.created", since_a, timeout=10, client_id="again")
    await on_a.send({"type": "follow", "generation_id": gid, "offset": 0})
    for sock in (on_a, on_b):
        await sock.wait(lambda s=sock: gid in s.ends, timeout=20, what="the new reply's end")
        assert sock.texts[gid] == "after the outage " + token


@pytest.mark.timeout(150)
async def test_redis_killed_and_restarted_mid_reply(stack, redis_server, fake_anthropic):
    text = _words(200, "k")
    client, username, conversation, on_a, on_b, gid = await _reply_on_a_followed_on_b(stack, fake_anthropic, text, tps=40)
    try:
        redis_server.kill()
        before = len(on_a.texts[gid])
        await asyncio.sleep(1.5)
        assert len(on_a.texts[gid]) > before, "the reply goes on for the socket on its own process"
        await _still_serving(stack, username, conversation)
        await on_a.wait(lambda: gid in on_a.ends, timeout=20, what="A's end")
        redis_server.restart()  # empty: groups, queues and keys are gone

        await on_b.wait(lambda: gid in on_b.ends, timeout=20, what="B's end after Redis is back")
        for sock in (on_a, on_b):
            assert not sock.reader.done(), f"socket closed: {sock.closed}"
            assert len(sock.ends[gid]) == 1
            assert sock.ends[gid][0]["message"]["status"] == "complete"
            assert sock.texts[gid] == text
            assert not sock.short_ends
        assert stack.stored_replies()[-1] == (text, "complete")
        await _sending_works_across_processes(client, conversation, on_a, on_b, fake_anthropic)
    finally:
        await client.close()


@pytest.mark.timeout(150)
async def test_redis_hung_for_20s_mid_reply(stack, redis_server, fake_anthropic):
    text = _words(300, "h")
    client, username, conversation, on_a, on_b, gid = await _reply_on_a_followed_on_b(stack, fake_anthropic, text, tps=30)
    try:
        redis_server.pause()
        loop = asyncio.get_running_loop()
        paused_at = loop.time()
        lengths = []
        while loop.time() - paused_at < 6:
            lengths.append(len(on_a.texts[gid]))
            await asyncio.sleep(1)
        # A hung Redis no longer holds up the flush: text arrives every second on A.
        assert all(later > earlier for earlier, later in zip(lengths, lengths[1:])), lengths
        await _still_serving(stack, username, conversation)
        await asyncio.sleep(max(0.0, 20 - (loop.time() - paused_at)))
        redis_server.resume()

        for sock in (on_a, on_b):
            await sock.wait(lambda s=sock: gid in s.ends, timeout=40, what="the end")
            assert not sock.reader.done(), f"socket closed: {sock.closed}"
            assert len(sock.ends[gid]) == 1
            assert sock.ends[gid][0]["message"]["status"] == "complete"
            assert sock.texts[gid] == text
            assert not sock.short_ends
        assert stack.stored_replies()[-1] == (text, "complete")
        await _sending_works_across_processes(client, conversation, on_a, on_b, fake_anthropic)
    finally:
        await client.close()
