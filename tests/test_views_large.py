"""A conversation of 2,000 messages opens with a bounded number of queries and all its text.

The browser side (the page stays responsive) is in tests/test_browser_feel.py.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest
from django.urls import reverse

from tests.seeding import seed_long_conversation

pytestmark = pytest.mark.django_db

MESSAGES = 2000
# Session, user, conversation, thread, summaries, totals, sidebar, presets, models, ...: a
# constant, whatever the length of the thread.
MAX_QUERIES = 20


def _without_csrf(html: str) -> str:
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", html)


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


def test_conversation_of_2000_messages_opens_with_constant_queries(alice_client, alice, django_assert_max_num_queries):
    conversation = seed_long_conversation(owner=alice, messages=MESSAGES, salt=f" ({uuid.uuid4().hex[:8]})")  # a cold cache
    url = reverse("conversation_detail", args=[conversation.pk])

    started = time.perf_counter()
    with django_assert_max_num_queries(MAX_QUERIES):
        response = alice_client.get(url)
    first = time.perf_counter() - started
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('class="msg msg-user') == MESSAGES // 2
    assert html.count('class="msg msg-assistant') == MESSAGES // 2
    assert html.count('<pre><code class="language-python">') == MESSAGES // 2 // 5
    assert f"Final reply {MESSAGES}." in html

    started = time.perf_counter()
    with django_assert_max_num_queries(MAX_QUERIES):
        again = alice_client.get(url)
    second = time.perf_counter() - started
    assert _without_csrf(again.content.decode()) == _without_csrf(html)
    # Entries of this run's (salted) texts: not left behind in a shared Redis.
    from django.core.cache import caches

    from conversations import htmlcache
    from conversations.models import Message

    texts = Message.objects.filter(conversation=conversation, role="assistant").values_list("content", flat=True)
    caches[htmlcache.CACHE_ALIAS].delete_many([htmlcache.cache_key(t) for t in texts])
    # A figure for the report, not an assertion: machines differ.
    print(f"\n{MESSAGES}-message conversation page: {first * 1000:.0f} ms first, {second * 1000:.0f} ms with the HTML cached, {len(html) // 1024} KiB")


def test_query_count_does_not_grow_with_the_thread(alice_client, alice, django_assert_num_queries):
    short = seed_long_conversation(owner=alice, messages=4)
    long = seed_long_conversation(owner=alice, messages=400)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    counts = []
    for conversation in (short, long):
        with CaptureQueriesContext(connection) as queries:
            assert alice_client.get(reverse("conversation_detail", args=[conversation.pk])).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


def test_other_user_cannot_open_a_long_conversation(client, alice, bob):
    conversation = seed_long_conversation(owner=alice, messages=40)
    client.force_login(bob)
    response = client.get(reverse("conversation_detail", args=[conversation.pk]))
    assert response.status_code == 404
    assert b"Final reply" not in response.content


def test_second_open_takes_the_replies_html_from_the_cache(alice_client, alice, monkeypatch):
    from conversations import renderpool

    conversation = seed_long_conversation(owner=alice, messages=60)
    url = reverse("conversation_detail", args=[conversation.pk])
    first = alice_client.get(url).content.decode()
    rendered: list[str] = []
    real = renderpool.render_now
    monkeypatch.setattr(renderpool, "render_now", lambda texts: rendered.extend(texts) or real(texts))
    again = alice_client.get(url).content.decode()
    assert rendered == []
    assert _without_csrf(again) == _without_csrf(first)


def test_cached_html_is_the_sanitised_rendering_of_the_same_text():
    from conversations import htmlcache
    from conversations.rendering import render_markdown

    texts = ["**bold** <script>alert(1)</script>", "```python\nprint(1)\n```", "", "**bold** <script>alert(1)</script>"]
    assert htmlcache.render_markdown_many(texts) == [render_markdown(t) for t in texts]
    assert htmlcache.render_markdown_many(texts) == [render_markdown(t) for t in texts]  # now from the cache
    assert htmlcache.cache_key("a") != htmlcache.cache_key("b")
    assert htmlcache.FINGERPRINT in htmlcache.cache_key("a")  # a renderer change changes every key


def test_page_still_opens_when_the_cache_is_down(alice_client, alice, monkeypatch):
    from django.core.cache import caches

    from conversations import htmlcache

    def down(*args, **kwargs):
        raise ConnectionError("cache down")

    cache = caches[htmlcache.CACHE_ALIAS]
    monkeypatch.setattr(cache, "get_many", down)
    monkeypatch.setattr(cache, "set_many", down)
    conversation = seed_long_conversation(owner=alice, messages=10)
    response = alice_client.get(reverse("conversation_detail", args=[conversation.pk]))
    assert response.status_code == 200
    assert "Final reply 10." in response.content.decode()
