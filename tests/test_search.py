"""Search across one's own conversations: titles and message text, ranked, owner-scoped, safe.

Runs on both databases: full-text search on PostgreSQL (with a substring fallback), substring
search on SQLite. Tests marked for one vendor check what only that one does.
"""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.urls import reverse

from conversations import search, services, workspace
from conversations.models import Conversation, Message

pytestmark = pytest.mark.django_db

postgres_only = pytest.mark.skipif("connection.vendor != 'postgresql'", reason="full-text search is PostgreSQL's")


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


def _conversation(owner, title: str = "", *messages: str) -> tuple[Conversation, list[Message]]:
    conversation = services.conversation_create(owner=owner)
    Conversation.objects.filter(pk=conversation.pk).update(title=title)
    conversation.title = title
    stored: list[Message] = []
    parent = None
    for i, text in enumerate(messages):
        parent = Message.objects.create(conversation=conversation, parent=parent, role="user" if i % 2 == 0 else "assistant", content=text)
        stored.append(parent)
    if parent is not None:
        Conversation.objects.filter(pk=conversation.pk).update(current_leaf=parent)
    return conversation, stored


def _text(snippet: search.Snippet) -> str:
    return snippet.text


def _marked(snippet: search.Snippet) -> list[str]:
    return [t.lower() for t, matched in snippet.parts if matched]


def test_finds_by_title(alice):
    conversation, _ = _conversation(alice, "Holiday in Lisbon", "where should we eat")
    [result] = search.search_for_user(user=alice, query="lisbon")
    assert result.conversation_id == conversation.pk and result.title_matched
    assert _text(result.title) == "Holiday in Lisbon" and _marked(result.title) == ["lisbon"]
    assert result.url == f"/chat/{conversation.pk}/"


def test_finds_by_message_text_and_links_to_the_message(alice):
    conversation, (question, answer) = _conversation(alice, "Untitled thoughts", "tell me about volcanoes", "Volcanoes form where magma rises.")
    [result] = search.search_for_user(user=alice, query="magma")
    assert result.conversation_id == conversation.pk and not result.title_matched
    [hit] = result.hits
    assert hit.message_id == answer.pk and hit.role == "assistant"
    assert hit.as_json(conversation.pk)["url"] == f"/chat/{conversation.pk}/#m{answer.pk}"
    assert "magma" in _marked(hit.snippet)


def test_every_word_must_match_and_a_phrase_and_exclusions_work(alice):
    both, _ = _conversation(alice, "", "the red fox jumps over the lazy dog")
    one, _ = _conversation(alice, "", "a red balloon")
    _conversation(alice, "", "the fox and the hound")
    assert [r.conversation_id for r in search.search_for_user(user=alice, query="red fox")] == [both.pk]
    assert [r.conversation_id for r in search.search_for_user(user=alice, query='"lazy dog"')] == [both.pk]
    assert [r.conversation_id for r in search.search_for_user(user=alice, query="red -fox")] == [one.pk]


def test_a_title_match_ranks_first_then_denser_matches(alice):
    sparse, _ = _conversation(alice, "notes", "Some long text about many things, and once about a zebra, then more words about other animals and places.")
    dense, _ = _conversation(alice, "more notes", "zebra zebra zebra: a zebra is striped")
    titled, _ = _conversation(alice, "Zebra facts", "all about stripes")
    order = [r.conversation_id for r in search.search_for_user(user=alice, query="zebra")]
    assert order == [titled.pk, dense.pk, sparse.pk]


def test_never_another_users_conversations(alice, bob):
    _conversation(bob, "Bob's zebra", "zebra secrets of bob")
    mine, _ = _conversation(alice, "", "my zebra")
    assert [r.conversation_id for r in search.search_for_user(user=alice, query="zebra")] == [mine.pk]
    assert [r.conversation_id for r in search.search_for_user(user=bob, query="my")] == []


def test_deleted_are_left_out_and_archived_are_marked(alice):
    deleted, _ = _conversation(alice, "deleted zebra", "zebra")
    archived, _ = _conversation(alice, "archived zebra", "zebra")
    plain, _ = _conversation(alice, "plain zebra", "zebra")
    workspace.conversation_delete(conversation=deleted)
    workspace.conversation_archive(conversation=archived)
    results = {r.conversation_id: r for r in search.search_for_user(user=alice, query="zebra")}
    assert set(results) == {archived.pk, plain.pk}
    assert results[archived.pk].archived and not results[plain.pk].archived


def test_snippet_escapes_markup_and_highlights_safely(alice_client, alice):
    evil = '<script>alert("pwned")</script> the zebra <img src=x onerror=alert(1)>'
    conversation, (message,) = _conversation(alice, '<b>bold</b> zebra title', evil)
    html = alice_client.get(reverse("conversation_search"), {"q": "zebra"}).content.decode()
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>bold</b>" not in html
    assert "&lt;script&gt;" in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert re.search(r"<mark>zebra</mark>", html, re.IGNORECASE)
    assert f'href="/chat/{conversation.pk}/#m{message.pk}"' in html
    # The JSON for the sidebar carries plain text parts (set with textContent there).
    data = alice_client.get(reverse("conversation_search_json"), {"q": "zebra"}).json()
    [result] = data["results"]
    snippet = result["hits"][0]["snippet"]
    assert "".join(text for text, _ in snippet).count("<script>") == 1
    assert [text.lower() for text, matched in snippet if matched] == ["zebra"]
    assert data["query"] == "zebra"


def test_snippet_is_a_window_around_a_match_far_into_a_long_message(alice):
    text = "lorem ipsum " * 400 + "the needle is here " + "dolor sit amet " * 400
    _conversation(alice, "", text)
    [result] = search.search_for_user(user=alice, query="needle")
    snippet = result.hits[0].snippet
    assert "needle" in _marked(snippet)
    assert len(snippet.text) < 400
    assert not snippet.text.startswith("lorem ipsum lorem ipsum lorem ipsum lorem ipsum lorem ipsum lorem ipsum lorem ipsum lorem ipsum lorem ipsum lorem ipsum lorem ipsum lorem ipsum")


def test_a_partial_word_or_code_identifier_is_found(alice):
    conversation, _ = _conversation(alice, "", "call get_user_by_email(address) to look it up")
    assert [r.conversation_id for r in search.search_for_user(user=alice, query="user_by_email")] == [conversation.pk]


def test_messages_on_another_branch_still_lead_to_the_conversation(alice):
    conversation, (question, first_reply) = _conversation(alice, "", "pick a colour", "I pick ultramarine.")
    second = Message.objects.create(conversation=conversation, parent=question, role="assistant", content="I pick crimson.")
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf=second)  # the first reply is now off-thread
    [result] = search.search_for_user(user=alice, query="ultramarine")
    assert result.conversation_id == conversation.pk and result.hits[0].message_id == first_reply.pk


def test_at_most_three_messages_per_conversation(alice):
    _conversation(alice, "", *["zebra number %d" % i for i in range(8)])
    [result] = search.search_for_user(user=alice, query="zebra")
    assert len(result.hits) == search.HITS_PER_CONVERSATION


def test_empty_and_oversized_queries(alice_client, alice):
    _conversation(alice, "zebra", "zebra")
    assert search.search_for_user(user=alice, query="   ") == []
    assert search.search_for_user(user=alice, query="-zebra") == []
    page = alice_client.get(reverse("conversation_search"))
    assert page.status_code == 200 and "Search the titles and messages" in page.content.decode()
    long = alice_client.get(reverse("conversation_search_json"), {"q": "zebra " * 500}).json()
    assert len(long["query"]) <= search.MAX_QUERY_CHARS and long["results"]


def test_search_page_queries_are_bounded(alice_client, alice, django_assert_max_num_queries):
    for i in range(25):
        _conversation(alice, f"zebra {i}", f"zebra message {i}", f"another zebra {i}")
    with django_assert_max_num_queries(12):
        response = alice_client.get(reverse("conversation_search"), {"q": "zebra"})
    assert response.content.decode().count('class="search-result"') == 25


def test_the_sidebar_search_box_goes_to_the_search_page(alice_client):
    html = alice_client.get(reverse("chat")).content.decode()
    assert f'action="{reverse("conversation_search")}"' in html and 'name="q"' in html


def test_parse_terms_reads_websearch_syntax():
    assert search.parse_terms('red "lazy  dog" -cat or fox, -"big bird"') == (["red", "lazy dog", "fox"], ["cat", "big bird"])


# --- PostgreSQL: full-text search -------------------------------------------------------------------


@postgres_only
def test_full_text_search_matches_other_forms_of_a_word(alice):
    conversation, _ = _conversation(alice, "", "She was running along the river every morning.")
    [result] = search.search_for_user(user=alice, query="runs")
    assert result.conversation_id == conversation.pk
    assert "running" in _marked(result.hits[0].snippet)


@postgres_only
def test_full_text_search_uses_the_gin_indexes(alice):
    from django.contrib.postgres.search import SearchQuery, SearchVector

    _conversation(alice, "zebra", "zebra")
    query = SearchQuery("zebra", search_type="websearch", config=search.SEARCH_CONFIG)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    plan = (
        Message.objects.annotate(document=SearchVector("content", config=search.SEARCH_CONFIG)).filter(document=query).explain()
    )
    assert "message_content_search" in plan, plan
    plan = (
        Conversation.objects.annotate(document=SearchVector("title", config=search.SEARCH_CONFIG)).filter(document=query).explain()
    )
    assert "conversation_title_search" in plan, plan


@postgres_only
def test_stop_words_only_fall_back_to_substring(alice):
    conversation, _ = _conversation(alice, "", "to be or not to be")
    assert [r.conversation_id for r in search.search_for_user(user=alice, query="to be")] == [conversation.pk]
