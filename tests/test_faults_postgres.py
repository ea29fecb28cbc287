"""PostgreSQL fails while replies end: no answer is lost (issue: faults, docs/reliability.md).

A private PostgreSQL cluster (tests/faultkit.py) under two real daphne processes; the test stops
it for 30 s while twenty replies end, then starts it again. Each reply must end stored complete
and identical to what every socket saw; a send during the outage is refused with the text kept;
the reaper, run the moment the database is back, must not mark the held replies interrupted;
the first request of each process after the outage succeeds.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import aiohttp
import pytest

from tests.faultkit import FaultStack, PrivatePostgres
from tests.wsclient import ChatClient, ProtocolSocket

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs the Redis channel layer (make test provides it)"),
    pytest.mark.skipif(PrivatePostgres.missing() is not None, reason=f"{PrivatePostgres.missing()}"),
]

REPLIES = 20
OUTAGE_SECONDS = 30.0


@pytest.fixture
def postgres():
    pg = PrivatePostgres.create()
    yield pg
    pg.destroy()


@pytest.fixture
def stack(fake_anthropic, postgres):
    stack = FaultStack(
        anthropic_url=fake_anthropic.url, database_url=postgres.url(),
        # A send during the outage waits this long for a connection before it is refused.
        extra_env={"CHATSITE_DB_POOL_TIMEOUT": "2", "CONN_MAX_AGE": "60"},
    ).start()
    yield stack
    stack.stop()


def _words(n: int, tag: str) -> str:
    return " ".join(f"{tag}{i:03d}" for i in range(n))


@pytest.mark.timeout(240)
async def test_postgres_down_for_30s_while_replies_end_loses_no_answer(stack, postgres, fake_anthropic):
    token = uuid.uuid4().hex[:10]
    texts = {}
    for i in range(REPLIES):
        texts[i] = _words(30, f"r{i}w")
        fake_anthropic.script([{"text": texts[i], "tps": 12}], match=f"go {token} {i}.")  # ~2.5 s each
    client = ChatClient(stack.url)
    try:
        await client.signup(f"pg{token}")
        conversations = [await client.new_conversation() for _ in range(REPLIES)]
        # The reply's socket on one process, a watcher on the other (relayed through Redis).
        own = [await ProtocolSocket.open(client, c, stack.urls[i % 2]) for i, c in enumerate(conversations)]
        watchers = [await ProtocolSocket.open(client, c, stack.urls[(i + 1) % 2]) for i, c in enumerate(conversations)]
        gids = []
        for i, sock in enumerate(own):
            since = len(sock.frames)
            await sock.send({"type": "send", "content": f"go {token} {i}.", "client_id": f"c{i}"})
            gids.append((await sock.first("message.created", since, client_id=f"c{i}"))["reply"]["generation_id"])
        for sock, gid in zip(own, gids):
            await sock.wait(lambda s=sock, g=gid: len(s.texts.get(g, "")) > 0, what="streaming")

        postgres.stop()
        down_at = time.monotonic()
        # The replies end while the database is down: every socket has the whole text, no end yet,
        # and is told the reply waits to be saved.
        for sock, gid, i in zip(own, gids, range(REPLIES)):
            await sock.wait(lambda s=sock, g=gid, t=texts[i]: s.texts.get(g) == t, timeout=20, what="the whole text")
            await sock.wait(lambda s=sock, g=gid: any(n["code"] == "saving" for n in s.notices.get(g, [])), timeout=10, what="the saving notice")
        assert not any(sock.ends for sock in own), "no end while the reply is not stored"

        # A send now is refused plainly; nothing is stored (the browser keeps the text in the box).
        refused_on = own[0]
        since = len(refused_on.frames)
        await refused_on.send({"type": "send", "content": f"during the outage {token}", "client_id": "outage"})
        error = await refused_on.first("error", since, timeout=15, client_id="outage")
        assert error["code"] == "unavailable" and error["client_id"] == "outage"
        assert "still in the box" in error["message"]

        await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
        postgres.start()
        # The reaper, the moment the database is back: the runners are alive, their replies spared.
        assert "Recovered 0" in stack.manage("recover_generations")
        # The first request of each process after the outage succeeds.
        for base in stack.urls:
            async with client.session.get(base + f"/chat/{conversations[0]}/") as response:
                assert response.status == 200, f"{base}: {response.status}"
            sock = await ProtocolSocket.open(client, conversations[0], base)
            await sock.first("hello")
            await sock.close()

        for sock, gid in [*zip(own, gids), *zip(watchers, gids)]:
            await sock.wait(lambda s=sock, g=gid: g in s.ends, timeout=30, what="the end")
        stored = {content: status for content, status in stack.stored_replies()}
        for i, gid in enumerate(gids):
            for sock in (own[i], watchers[i]):
                assert len(sock.ends[gid]) == 1, "exactly one end"
                assert sock.ends[gid][0]["message"]["status"] == "complete"
                assert sock.texts[gid] == texts[i]
            assert stored.get(texts[i]) == "complete", f"reply {i} stored as {stored.get(texts[i])!r}"
        assert not any(sock.short_ends for sock in [*own, *watchers])
        assert not any(f"during the outage {token}" in content for content in stored)
    finally:
        await client.close()


async def test_first_request_of_each_process_after_a_database_restart_succeeds(stack, postgres):
    client = ChatClient(stack.url)
    try:
        await client.signup(f"pg{uuid.uuid4().hex[:10]}")
        conversation = await client.new_conversation()
        for base in stack.urls:  # every process holds database connections now
            for _ in range(3):
                async with client.session.get(base + f"/chat/{conversation}/") as response:
                    assert response.status == 200
            sock = await ProtocolSocket.open(client, conversation, base)
            await sock.first("hello")
            await sock.close()
        postgres.stop()
        postgres.start()
        for base in stack.urls:
            sock = await ProtocolSocket.open(client, conversation, base)
            await sock.first("hello")
            await sock.close()
            async with client.session.get(base + f"/chat/{conversation}/") as response:
                assert response.status == 200, f"{base}: {response.status}"
    finally:
        await client.close()


POOL_MAX = 6


async def test_page_loads_hold_at_most_the_pool_of_connections_per_process(fake_anthropic, postgres):
    """300 page loads at concurrency 32 over two processes: without the pool (CONN_MAX_AGE=60
    under ASGI, a connection per thread) this held 189 connections at the peak."""
    env = {"CONN_MAX_AGE": "60", "CHATSITE_DB_POOL_MAX_SIZE": str(POOL_MAX)}
    stack = FaultStack(anthropic_url=fake_anthropic.url, database_url=postgres.url(), extra_env=env).start()
    client = ChatClient(stack.url)
    try:
        await client.signup(f"pg{uuid.uuid4().hex[:10]}")
        conversation = await client.new_conversation()
        peak = 0
        semaphore = asyncio.Semaphore(32)

        async def load(i: int) -> int:
            async with semaphore, client.session.get(stack.urls[i % 2] + f"/chat/{conversation}/") as response:
                await response.read()
                return response.status

        async def count() -> None:
            nonlocal peak
            while True:
                rows = await asyncio.to_thread(postgres.sql, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE datname = 'chatsite'")
                peak = max(peak, rows[0][0])
                await asyncio.sleep(0.05)

        counter = asyncio.get_running_loop().create_task(count())
        statuses = await asyncio.gather(*(load(i) for i in range(300)))
        counter.cancel()
        assert statuses.count(200) == 300
        # Each process's pool, plus the management command of the stack's start-up at most.
        assert peak <= 2 * POOL_MAX, f"{peak} connections at the peak"
    finally:
        await client.close()
        stack.stop()
