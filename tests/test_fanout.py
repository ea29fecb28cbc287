"""A person's events reach every socket: directly when all of them are in this process,
through the channel layer when one of them is elsewhere."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from conversations import groups, services
from conversations import hub as hub_module
from tests.conftest import Socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]


@pytest.fixture
def group_sends(monkeypatch):
    """The person-group sends that went through the channel layer."""
    sent: list[str] = []
    layer = get_channel_layer()
    real = layer.group_send

    async def spy(group, message):
        sent.append(message["type"])
        await real(group, message)

    monkeypatch.setattr(layer, "group_send", spy)
    return sent


async def test_tabs_in_this_process_get_the_events_without_the_channel_layer(llm, token, alice, group_sends):
    conversation = await sync_to_async(services.conversation_create)(owner=alice)
    elsewhere = await sync_to_async(services.conversation_create)(owner=alice)
    llm.script([{"text": "Both tabs see this."}], match=token)
    first, second, sidebar = Socket(alice, conversation.pk), Socket(alice, conversation.pk), Socket(alice, elsewhere.pk)
    for sock in (first, second, sidebar):
        await sock.connect()
    created = await first.send_message(f"hi {token}")
    gid = created["reply"]["generation_id"]
    assert (await second.receive_type("message.created"))["reply"]["generation_id"] == gid
    for sock in (first, second):
        text, end = await sock.follow_to_end(gid)
        assert text == "Both tabs see this." and end["message"]["status"] == "complete"
    # The tab on another conversation is told the reply ended (the sidebar announces it).
    assert (await sidebar.receive_type("generation.end"))["generation_id"] == gid
    assert group_sends == []
    for sock in (first, second, sidebar):
        await sock.close()


async def test_a_socket_in_another_process_gets_them_through_the_channel_layer(llm, token, alice, group_sends):
    conversation = await sync_to_async(services.conversation_create)(owner=alice)
    llm.script([{"text": "Far away too."}], match=token)
    layer = get_channel_layer()
    remote = await layer.new_channel()  # stands for a socket served by another daphne process
    await layer.group_add(groups.user_group(alice.pk), remote)
    sock = Socket(alice, conversation.pk)
    await sock.connect()
    created = await sock.send_message(f"hi {token}")
    text, _ = await sock.follow_to_end(created["reply"]["generation_id"])
    assert text == "Far away too."
    received = [await layer.receive(remote), await layer.receive(remote)]
    assert [m["type"] for m in received] == ["chat.message_created", "chat.generation_end"]
    assert received[0]["payload"]["reply"]["generation_id"] == created["reply"]["generation_id"]
    assert group_sends == ["chat.message_created", "chat.generation_end"]
    # Not twice: the local socket got each event once (its own send is never echoed back).
    assert [f["type"] for f in sock.frames].count("message.created") == 1
    assert [f["type"] for f in sock.frames].count("generation.end") == 1
    await sock.close()


async def test_a_closed_socket_leaves_the_registry(alice):
    conversation = await sync_to_async(services.conversation_create)(owner=alice)
    sock = Socket(alice, conversation.pk)
    await sock.connect()
    hub = hub_module.get_hub()
    assert len(hub.sockets.of(alice.pk)) == 1
    await sock.close()
    assert hub.sockets.of(alice.pk) == {}


async def test_many_people_told_at_once_cost_one_pipelined_read():
    """A burst of events for different people reads their groups in one Redis round trip."""
    import asyncio

    from conversations.fanout import Registry, tell_user

    layer = get_channel_layer()
    registry = Registry()
    got: dict[int, list[str]] = {}

    class Tab:
        def __init__(self, user_id: int, channel_name: str) -> None:
            self.user_id, self.channel_name = user_id, channel_name

        async def dispatch(self, message):
            got.setdefault(self.user_id, []).append(message["type"])

    users = range(10_000_001, 10_000_031)  # ids no other test uses
    for user_id in users:
        channel = await layer.new_channel()
        await layer.group_add(groups.user_group(user_id), channel)
        registry.add(user_id, Tab(user_id, channel))
    await asyncio.gather(*(tell_user(layer, registry, user_id, {"type": "chat.test"}) for user_id in users))
    assert got == {user_id: ["chat.test"] for user_id in users}
    assert 1 <= registry.reader(layer, 0).batches <= 2  # the first read alone, then everyone else's together
    for user_id in users:
        for name in registry.of(user_id):
            await layer.group_discard(groups.user_group(user_id), name)
