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
import uuid

import pytest

from tests.faultkit import FaultStack, PrivatePostgres
from tests.faultscenarios import postgres_outage
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


@pytest.mark.timeout(240)
async def test_postgres_down_for_30s_while_replies_end_loses_no_answer(stack, postgres, fake_anthropic):
    report = await postgres_outage(stack, postgres, fake_anthropic, replies=REPLIES, outage=OUTAGE_SECONDS)
    # While the database was down: the whole text on every socket, no end (nothing stored yet),
    # every reply's socket told it waits to be saved, a send refused with the text kept.
    assert report.notes["ended while down"] == 0
    assert report.notes["saving notices"] == REPLIES
    assert report.notes["send refused"] == "unavailable" and "still in the box" in report.notes["refusal"]
    assert not report.notes["outage send stored"]
    # The reaper, the moment the database is back: the runners are alive, their replies spared.
    assert report.notes["reaped"] == 0
    # The first page and handshake of each process after the outage.
    assert report.notes["first requests"] == [200, 101, 200, 101]
    # Every reply stored complete and identical to what both of its sockets saw, one end each.
    assert report.lost_chars == 0, report.notes["losses"]
    assert report.ends_per_socket == [1] * 2 * REPLIES
    assert report.statuses == {"complete": 2 * REPLIES}
    assert report.short_ends == 0 and report.closed_sockets == 0


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
