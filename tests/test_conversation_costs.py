"""What a conversation costs and what Claude remembered, as the conversation page shows it:
usage under each reply, totals in the header (replies, summaries and titles), the cache hit
rate, summary markers, context notices, and the live `conversation.updated` frame."""

from __future__ import annotations

import html as htmllib
import re
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import SpendLimit
from conversations import formatting, groups, services
from conversations.models import Message, Summary, UsageRecord
from tests.conftest import Socket


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


def _exchange(conversation, question: str, answer: str, parent=None, **usage) -> tuple[Message, Message]:
    user = Message.objects.create(conversation=conversation, parent=parent, role="user", content=question)
    reply = Message.objects.create(conversation=conversation, parent=user, role="assistant", content=answer, model=conversation.model, **usage)
    conversation.current_leaf = reply
    conversation.save()
    return user, reply


def _record(conversation, kind: str, cost: str, message=None, **tokens) -> UsageRecord:
    return UsageRecord.objects.create(
        user=conversation.owner, conversation=conversation, message=message, kind=kind, model=conversation.model,
        cost=Decimal(cost), uncached_cost=Decimal(cost), **tokens,
    )


def _text(fragment: str) -> str:
    """Visible text of an HTML fragment, whitespace collapsed."""
    return " ".join(htmllib.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def _element(page: str, start_marker: str) -> str:
    """The element that starts at `start_marker` up to its closing tag of the same name (no nesting of that tag)."""
    start = page.index(start_marker)
    tag = re.match(r"<(\w+)", page[start:]).group(1)
    depth, pos = 0, start
    for m in re.finditer(rf"<(/?){tag}\b[^>]*>", page[start:]):
        depth += -1 if m.group(1) else 1
        if depth == 0:
            pos = start + m.end()
            break
    return page[start:pos]


def _detail(client, conversation) -> str:
    response = client.get(reverse("conversation_detail", args=[conversation.pk]))
    assert response.status_code == 200
    return response.content.decode()


# ---------------------------------------------------------------------------------- formatting


@pytest.mark.parametrize("amount,shown", [
    ("0", "$0.00"), ("0E-8", "$0.00"), ("0.00421500", "$0.0042"), ("0.00425", "$0.0043"), ("0.0001", "$0.0001"),
    ("0.000042", "$0.000042"), ("0.0000421", "$0.000042"), ("8E-8", "$0.000000080"), ("0.5", "$0.5000"),
    ("1.005", "$1.01"), ("1234.5", "$1,234.50"),
])
def test_costs_read_with_four_decimals_and_two_significant_digits_when_tiny(amount, shown):
    assert formatting.usd(Decimal(amount)) == shown


@pytest.mark.parametrize("read,prompt,shown", [(0, 0, "—"), (0, 100, "0%"), (1, 1000, "<1%"), (5, 10, "50%"), (2, 3, "67%"), (3000, 4234, "71%")])
def test_cache_hit_rate_is_a_whole_percentage(read, prompt, shown):
    assert formatting.hit_rate(cache_read=read, prompt=prompt) == shown


# ---------------------------------------------------------------------------------- the page


@pytest.mark.django_db
def test_finished_reply_shows_tokens_cache_use_and_cost(alice_client, alice):
    conversation = services.conversation_create(owner=alice)
    _exchange(conversation, "q", "a", input_tokens=1234, output_tokens=350, cache_read_input_tokens=3000,
              cache_creation_input_tokens=1200, cost=Decimal("0.00421500"))
    page = _detail(alice_client, conversation)
    line = _element(page, '<span class="msg-usage')
    assert _text(line) == "1,234 in · 350 out · cache read 3,000 · wrote 1,200 · $0.0042"
    assert "cache-read" in line and "cache-write" in line  # marked, for the eye and for styles
    title = htmllib.unescape(re.search(r'title="([^"]*)"', line).group(1))
    assert "Input: 1,234 tokens" in title and "Output: 350 tokens" in title
    assert "Cache write: 1,200 tokens" in title and "Cache read: 3,000 tokens" in title
    assert "$0.004215 at the prices of the time" in title


@pytest.mark.django_db
def test_reply_without_cache_use_says_nothing_about_the_cache(alice_client, alice):
    conversation = services.conversation_create(owner=alice)
    _exchange(conversation, "q", "a", input_tokens=20, output_tokens=5, cache_creation_input_tokens=2048, cost=Decimal("0.0001"))
    _exchange(conversation, "q2", "a2", parent=conversation.current_leaf, input_tokens=10, output_tokens=3, cost=Decimal("0.00000900"))
    page = _detail(alice_client, conversation)
    first, second = re.findall(r'<span class="msg-usage[^"]*"[^>]*>.*?</span></span>', page)
    assert _text(first) == "20 in · 5 out · cache wrote 2,048 · $0.0001"
    classes = [re.match(r'<span class="([^"]*)"', line).group(1).split() for line in (first, second)]
    assert classes == [["msg-usage", "cache-write"], ["msg-usage"]]
    assert _text(second) == "10 in · 3 out · $0.0000090"


@pytest.mark.django_db
def test_header_totals_count_replies_summaries_and_titles_of_this_conversation_only(alice_client, alice, bob):
    conversation = services.conversation_create(owner=alice)
    _, reply = _exchange(conversation, "q", "a", cost=Decimal("0.0100"))
    _record(conversation, "reply", "0.0100", message=reply, input_tokens=1000, cache_read_tokens=3000, cache_write_5m_tokens=500, cache_write_1h_tokens=500)
    _record(conversation, "summary", "0.0020", input_tokens=9000)  # no cache: not in the hit rate
    _record(conversation, "title", "0.0003", input_tokens=200)
    other = services.conversation_create(owner=alice)
    _record(other, "reply", "5.0000", input_tokens=10)
    _record(services.conversation_create(owner=bob), "reply", "7.0000", input_tokens=10)

    page = _detail(alice_client, conversation)
    header = _element(page, '<span class="conv-usage"')
    assert _text(header) == "Total $0.0123 · cache hits 60%"  # 3,000 read of 5,000 prompt tokens
    cost_title = htmllib.unescape(re.search(r'id="conv-cost" title="([^"]*)"', header).group(1))
    assert "replies $0.0100, summaries $0.0020, titles $0.0003" in cost_title
    rate_title = htmllib.unescape(re.search(r'id="conv-cache-rate" title="([^"]*)"', header).group(1))
    assert "3,000 of 5,000" in rate_title
    # The page's state lets the script add replies that finish while it is open.
    assert '"cost": "0.01230000"' in page and '"promptTokens": 5000' in page and '"cacheReadTokens": 3000' in page


@pytest.mark.django_db
def test_new_conversation_costs_nothing_and_has_no_hit_rate_yet(alice_client, alice):
    page = _detail(alice_client, services.conversation_create(owner=alice))
    assert _text(_element(page, '<span class="conv-usage"')) == "Total $0.00 · cache hits —"


@pytest.mark.django_db
def test_trimmed_context_notice_is_shown_under_the_reply(alice_client, alice):
    conversation = services.conversation_create(owner=alice)
    note = "The 4 oldest messages did not fit in the model's context window, so Claude did not see them for this reply."
    _exchange(conversation, "q", "a", context_note=note)
    _exchange(conversation, "q2", "a2", parent=conversation.current_leaf)
    page = _detail(alice_client, conversation)
    notes = re.findall(r'<div class="msg-context-note" role="note">(.*?)</div>', page)
    assert [htmllib.unescape(n) for n in notes] == [note]


@pytest.mark.django_db
def test_summary_marker_follows_its_cut_and_reveals_the_sanitised_summary(alice_client, alice):
    conversation = services.conversation_create(owner=alice)
    _, first = _exchange(conversation, "q1", "a1")
    _, second = _exchange(conversation, "q2", "a2", parent=first)
    Summary.objects.create(conversation=conversation, upto=first, text="**Alice** likes tomatoes <script>alert(1)</script>", model="m", covered_messages=2)
    page = _detail(alice_client, conversation)
    thread = page[page.index('id="thread"'):page.index('id="composer"')]
    marker = _element(thread, '<div class="memory-marker"')
    assert "Claude's memory of the messages above was summarised here" in marker
    assert "<details" in marker and "<strong>Alice</strong> likes tomatoes" in marker
    assert "<script>" not in marker and "&lt;script&gt;" in marker
    # Right after the message it summarises up to, before the next one.
    assert thread.index(f'data-message-id="{first.pk}"') < thread.index("memory-marker") < thread.index(f'data-message-id="{second.parent_id}"')


@pytest.mark.django_db
def test_summary_of_another_branch_is_not_shown(alice_client, alice):
    conversation = services.conversation_create(owner=alice)
    user, old_reply = _exchange(conversation, "q1", "old answer")
    Summary.objects.create(conversation=conversation, upto=old_reply, text="memory of the old branch", model="m")
    # A regenerated reply to the same question is now the visible thread.
    new_reply = Message.objects.create(conversation=conversation, parent=user, role="assistant", content="new answer")
    conversation.current_leaf = new_reply
    conversation.save()
    page = _detail(alice_client, conversation)
    assert "memory-marker" not in page[page.index('id="thread"'):page.index('id="composer"')]
    assert "memory of the old branch" not in page
    data = alice_client.get(reverse("conversation_summaries", args=[conversation.pk])).json()
    assert data["summaries"] == []


@pytest.mark.django_db
def test_summaries_json_gives_the_visible_summaries_and_totals(alice_client, alice):
    conversation = services.conversation_create(owner=alice)
    _, first = _exchange(conversation, "q1", "a1")
    _exchange(conversation, "q2", "a2", parent=first)
    summary = Summary.objects.create(conversation=conversation, upto=first, text="Notes <img src=x onerror=alert(1)>", model="m", covered_messages=2)
    _record(conversation, "title", "0.0003")
    data = alice_client.get(reverse("conversation_summaries", args=[conversation.pk])).json()
    assert data["conversation_id"] == conversation.pk
    [item] = data["summaries"]
    assert item["id"] == summary.pk and item["upto_id"] == first.pk and item["covered_messages"] == 2
    assert "<img" not in item["html"] and "Notes" in item["html"]
    assert data["totals"]["cost"] == "0.00030000" and data["totals"]["titleCost"] == "0.00030000"


@pytest.mark.django_db
def test_summaries_json_is_only_for_the_owner(client, alice, bob):
    conversation = services.conversation_create(owner=alice)
    _, first = _exchange(conversation, "q1", "a1")
    Summary.objects.create(conversation=conversation, upto=first, text="alice's secret memory", model="m")
    url = reverse("conversation_summaries", args=[conversation.pk])
    anonymous = client.get(url)
    assert anonymous.status_code == 302 and reverse("login") in anonymous["Location"]
    client.force_login(bob)
    response = client.get(url)
    assert response.status_code == 404 and b"secret" not in response.content
    assert client.get(reverse("conversation_summaries", args=[999_999])).status_code == 404


@pytest.mark.django_db
def test_detail_page_queries_do_not_grow_with_messages_or_summaries(alice_client, alice, django_assert_max_num_queries):
    small = services.conversation_create(owner=alice)
    _exchange(small, "q", "a", cost=Decimal("0.001"))
    with CaptureQueriesContext(connection) as baseline:
        _detail(alice_client, small)

    big = services.conversation_create(owner=alice)
    parent = None
    for i in range(60):
        _, parent = _exchange(big, f"q{i}", f"a{i}", parent=parent, input_tokens=10, cost=Decimal("0.001"))
        _record(big, "reply", "0.001", message=parent, input_tokens=10)
        if i % 10 == 9:
            Summary.objects.create(conversation=big, upto=parent, text=f"summary {i}", model="m")
            _record(big, "summary", "0.0005")
    _record(big, "title", "0.0001")
    with CaptureQueriesContext(connection) as many:
        page = _detail(alice_client, big)
    assert page.count('class="memory-marker"') == 6 and page.count("data-prompt-tokens=") == 60
    assert len(many) == len(baseline), [q["sql"] for q in many]
    with django_assert_max_num_queries(9):  # session, user, conversation, messages, summaries, totals, sidebar (+ preset)
        _detail(alice_client, big)
    with django_assert_max_num_queries(6):
        alice_client.get(reverse("conversation_summaries", args=[big.pk]))


# ---------------------------------------------------------------------------------- the socket

socket_db = pytest.mark.django_db(transaction=True)


async def _send_update(user_id: int, **fields) -> None:
    await get_channel_layer().group_send(groups.user_group(user_id), {"type": "chat.conversation_update", **fields})


@socket_db
@pytest.mark.usefixtures("hub_cleanup")
async def test_title_update_reaches_every_socket_of_the_owner_only(alice, bob):
    here = await sync_to_async(services.conversation_create)(owner=alice)
    there = await sync_to_async(services.conversation_create)(owner=alice)
    bobs = await sync_to_async(services.conversation_create)(owner=bob)
    sockets = [Socket(alice, here.pk), Socket(alice, there.pk), Socket(bob, bobs.pk)]
    for s in sockets:
        assert (await s.connect())[0]
    try:
        await _send_update(alice.pk, conversation_id=here.pk, title="Tomato growing tips")
        for s in sockets[:2]:
            frame = await s.receive_type("conversation.updated")
            assert frame == {"type": "conversation.updated", "conversation_id": here.pk, "title": "Tomato growing tips"}
        assert await sockets[2].comm.receive_nothing(timeout=0.3)
    finally:
        for s in sockets:
            await s.close()


@socket_db
@pytest.mark.usefixtures("hub_cleanup")
async def test_summary_update_frame_names_the_cut(alice):
    conversation = await sync_to_async(services.conversation_create)(owner=alice)
    socket = Socket(alice, conversation.pk)
    assert (await socket.connect())[0]
    try:
        await _send_update(alice.pk, conversation_id=conversation.pk, summarised_upto=42)
        frame = await socket.receive_type("conversation.updated")
        assert frame == {"type": "conversation.updated", "conversation_id": conversation.pk, "summarised_upto": 42}
    finally:
        await socket.close()


@socket_db
@pytest.mark.usefixtures("hub_cleanup")
async def test_send_over_budget_is_refused_with_its_code_and_nothing_is_stored(alice):
    conversation = await sync_to_async(services.conversation_create)(owner=alice)
    await sync_to_async(SpendLimit.objects.create)(user=alice, monthly_limit=Decimal("0"))
    socket = Socket(alice, conversation.pk)
    assert (await socket.connect())[0]
    try:
        await socket.send({"type": "send", "content": "hello", "client_id": "c9"})
        error = await socket.receive_type("error")
        assert error["code"] == "over_budget" and error["client_id"] == "c9"
        assert "monthly budget" in error["message"] and "resets" in error["message"]
        assert not await sync_to_async(Message.objects.filter(conversation=conversation).exists)()
    finally:
        await socket.close()
