"""Late follows across processes: a socket on process B asks to follow a reply that process A is
just finishing. Whatever the order in which its follow, the relayed frames and the announcement
of the end arrive, the socket must have the whole text before its one end (docs/protocol.md).

Before: 4 of 120 such sockets got the end without the text they were missing.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid

import pytest

from tests.faultkit import FaultStack
from tests.wsclient import ChatClient, ProtocolSocket

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
    rng = random.Random(12)
    client = ChatClient(stack.url)
    try:
        await client.signup(f"late{uuid.uuid4().hex[:10]}")
        conversation = await client.new_conversation()
        on_a = await ProtocolSocket.open(client, conversation, stack.urls[0])
        for trial in range(TRIALS):
            token = uuid.uuid4().hex[:10]
            text = " ".join(f"t{trial}w{i:02d}" for i in range(40))
            fake_anthropic.script([{"text": text, "tps": 40}], match=f"late {token}.")  # about 1 s
            late = [await ProtocolSocket.open(client, conversation, stack.urls[1]) for _ in range(FOLLOWERS)]
            since = len(on_a.frames)
            await on_a.send({"type": "send", "content": f"late {token}.", "client_id": token})
            gid = (await on_a.first("message.created", since, client_id=token))["reply"]["generation_id"]
            await on_a.wait(lambda: len(on_a.texts.get(gid, "")) >= len(text) * 0.85, what="most of the reply")

            async def follow(sock: ProtocolSocket) -> None:
                await asyncio.sleep(rng.uniform(0, 0.2))  # around the end of the reply
                await sock.send({"type": "follow", "generation_id": gid, "offset": 0})

            await asyncio.gather(*(follow(sock) for sock in late))
            for n, sock in enumerate(late):
                await sock.wait(lambda s=sock: gid in s.ends, timeout=20, what=f"trial {trial} follower {n}'s end")
            await asyncio.sleep(0.3)  # a second end, if any, would have come by now
            for n, sock in enumerate(late):
                assert sock.short_ends == [], f"trial {trial} follower {n}: an end before the text {sock.short_ends}"
                assert len(sock.ends[gid]) == 1, f"trial {trial} follower {n}: {len(sock.ends[gid])} ends"
                assert sock.texts[gid] == text
                await sock.close()
    finally:
        await client.close()
