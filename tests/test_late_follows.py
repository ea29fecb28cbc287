"""Late follows across processes: a socket on process B asks to follow a reply that process A is
just finishing. Whatever the order in which its follow, the relayed frames and the announcement
of the end arrive, the socket must have the whole text before its one end (docs/protocol.md).

Before: 4 of 120 such sockets got the end without the text they were missing.
"""

from __future__ import annotations

import os

import pytest

from tests.faultkit import FaultStack
from tests.faultscenarios import late_follows

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs the Redis channel layer (make test provides it)"),
]

TRIALS = 10
FOLLOWERS = 20  # per trial: 200 late follows


@pytest.fixture
def stack(fake_anthropic):
    stack = FaultStack(anthropic_url=fake_anthropic.url).start()
    yield stack
    stack.stop()


@pytest.mark.timeout(240)
async def test_200_late_follows_across_processes_get_the_whole_text_before_the_end(stack, fake_anthropic):
    report = await late_follows(stack, fake_anthropic, trials=TRIALS, followers=FOLLOWERS)
    assert report.sockets == TRIALS * FOLLOWERS
    assert report.short_ends == 0, "an end came before the text it was missing"
    assert report.ends_per_socket == [1] * TRIALS * FOLLOWERS
    assert report.lost_chars == 0, report.notes["losses"]
