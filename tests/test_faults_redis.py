"""Redis fails (killed and restarted empty, or hung): replies go on, sockets stay, nothing is lost.

A private redis-server (tests/faultkit.py) serves the channel layer, the caches and Celery of
two real daphne processes. A reply runs on process A; one socket follows it on A, another on B
(through Redis). While Redis is away, A's socket keeps getting the reply, no socket is closed,
pages and log-ins work; when Redis is back (no process restarted), B's socket gets whatever it
missed and exactly one end, and sending works again across processes.
"""

from __future__ import annotations

import os

import pytest

from tests.faultkit import FaultStack, PrivateRedis
from tests.faultscenarios import redis_outage

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


@pytest.mark.timeout(150)
@pytest.mark.parametrize("mode", ["kill", "pause"])
async def test_redis_killed_or_hung_mid_reply_loses_nothing(stack, redis_server, fake_anthropic, mode):
    report = await redis_outage(stack, redis_server, fake_anthropic, mode=mode, seconds=20)
    # The reply goes on for the socket on its own process: more text every second of the outage.
    lengths = report.notes["A's text each second"]
    assert all(later > earlier for earlier, later in zip(lengths, lengths[1:])), lengths
    # Log-ins and pages on both processes meanwhile (the caches fall back to process memory).
    assert report.notes["served meanwhile"] == [302, 200, 302, 200]
    # A new chat on a process, started and answered while Redis is away.
    assert report.notes["a new chat meanwhile"] == "complete"
    # Once Redis is back (no process restarted): both sockets have the whole text and one end,
    # none was closed, the reply is stored complete, and sending works across processes again.
    assert report.lost_chars == 0 and report.short_ends == 0, report.notes["losses"]
    assert report.ends_per_socket == [1, 1] and report.statuses == {"complete": 2}
    assert report.closed_sockets == 0
    assert report.notes["sending across processes after"] == "ok", stack.logs()
