"""Limits on websocket frames per socket and replies started per person (issue 13, item 10)."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from conversations import services
from conversations.models import Message
from conversations.wslimits import FrameLimit, Verdict
from tests.conftest import Socket, clear_default_cache

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]


@pytest.fixture(autouse=True)
def _fresh_counters():
    clear_default_cache()
    yield
    clear_default_cache()


async def test_frames_past_the_socket_limit_are_refused_with_a_clear_error(alice, conversation, settings):
    settings.CHATSITE_WS_FRAME_RATE = "10/m"
    sock = Socket(alice, conversation.pk)
    await sock.connect()
    for _ in range(15):
        await sock.send({"type": "ping"})
    answers = [await sock.receive() for _ in range(15)]
    assert [a["type"] for a in answers] == ["pong"] * 10 + ["error"] * 5
    assert {a["code"] for a in answers[10:]} == {"rate_limited"}
    assert "Too many requests on this connection" in answers[-1]["message"]
    await sock.close()


async def test_a_socket_that_keeps_flooding_is_disconnected(alice, conversation, settings):
    settings.CHATSITE_WS_FRAME_RATE = "5/m"
    sock = Socket(alice, conversation.pk)
    await sock.connect()
    for _ in range(20):
        await sock.send({"type": "ping"})
    assert await sock.closed_with() == 4429
    assert [f["type"] for f in sock.frames[1:]] == ["pong"] * 5 + ["error"] * 5


async def test_replies_started_per_person_are_limited_over_all_their_sockets(llm, token, alice, settings):
    settings.CHATSITE_WS_SEND_RATE = "2/m"
    llm.script([{"text": "ok"}], match=token)
    first, second = [await sync_to_async(services.conversation_create)(owner=alice) for _ in range(2)]
    tab1, tab2 = Socket(alice, first.pk), Socket(alice, second.pk)
    await tab1.connect()
    await tab2.connect()
    created = await tab1.send_message(f"one {token}")
    await tab1.follow_to_end(created["reply"]["generation_id"])
    assert (await tab2.receive_type("message.created"))["client_id"] == "c1"  # (tab1's, told to the sidebar)
    created = await tab2.send_message(f"two {token}", client_id="c2")
    await tab2.follow_to_end(created["reply"]["generation_id"])

    await tab1.send({"type": "send", "content": f"three {token}", "client_id": "c3"})
    error = await tab1.receive_type("error")
    assert (error["code"], error["client_id"]) == ("rate_limited", "c3")
    assert "Wait" in error["message"] and "still in the box" in error["message"]
    stored = await sync_to_async(lambda: sorted(Message.objects.filter(role="user").values_list("content", flat=True)))()
    assert stored == [f"one {token}", f"two {token}"]
    await tab1.close()
    await tab2.close()


def test_the_frame_window_starts_again_after_its_period():
    now = [0.0]
    limit = FrameLimit("2/m", clock=lambda: now[0])
    assert [limit.check() for _ in range(5)] == [Verdict.OK, Verdict.OK, Verdict.REFUSE, Verdict.REFUSE, Verdict.CLOSE]
    now[0] = 61.0
    assert limit.check() is Verdict.OK


def test_an_empty_rate_turns_the_frame_limit_off():
    limit = FrameLimit("")
    assert all(limit.check() is Verdict.OK for _ in range(10_000))
