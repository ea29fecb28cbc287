"""Nothing from the XSS corpus (tests/xss_corpus.py) becomes script, whichever way it comes in.

Model output: the renderer itself, then a scripted reply over the real pipeline (fake Anthropic
→ runner → database → the socket's final frame and the conversation page), the share page and
an imported conversation. User input: a sent message, shown in the thread, the page title and
the sidebar. Downloads and the message-source endpoint are never HTML.
"""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async as sync_to_async
from django.test import Client
from django.urls import reverse

from conversations import exports, sharing
from conversations.models import Conversation, Message
from conversations.rendering import render_markdown
from tests.conftest import Socket
from tests.xss_corpus import PAYLOADS, TITLE_PAYLOAD, corpus_document, elements, inert_problems, page_problems


# --- the renderer -----------------------------------------------------------------------------


@pytest.mark.parametrize("payload", PAYLOADS)
def test_each_payload_renders_inert(payload):
    html = render_markdown(f"Before\n\n{payload}\n\nAfter")
    assert inert_problems(html) == [], html


@pytest.mark.parametrize("payload", PAYLOADS)
def test_each_payload_renders_inert_inline_and_in_containers(payload):
    """Inside a list, a quote, a table cell and an emphasis run the context changes; the
    sanitiser still decides."""
    flat = payload.replace("\n", " ")
    for text in (f"- {payload}", f"> {payload}", f"| h |\n|---|\n| {flat} |", f"**{flat}**", f"[{flat}](https://ok.example)"):
        html = render_markdown(text)
        assert inert_problems(html) == [], (text, html)


def test_whole_corpus_as_one_document_renders_inert():
    html = render_markdown(corpus_document())
    assert inert_problems(html) == []
    # Shown, not dropped: the raw HTML is there as text.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;svg onload=alert(1)&gt;" in html


def test_links_keep_only_http_https_and_mailto_and_open_safely():
    html = render_markdown("[a](https://ok.example) [b](mailto:x@example.com) [c](javascript:alert(1)) [d](/relative) [e](ftp://x.example)")
    anchors = [dict(attrs) for tag, attrs in elements(html) if tag == "a"]
    assert [a.get("href") for a in anchors] == ["https://ok.example", "mailto:x@example.com", None, None]  # [c] stays text
    for a in anchors:
        assert a["target"] == "_blank" and a["rel"] == "noopener noreferrer nofollow"


def test_code_fence_language_cannot_inject_attributes_or_classes():
    html = render_markdown('```"><script>alert(1)</script>\nx\n```\n\n```copy-code\ny\n```\n\n```Python\nprint(1)\n```')
    classes = [dict(attrs).get("class") for tag, attrs in elements(html) if tag == "code"]
    assert classes == [None, "language-copy-code", "language-python"]
    assert inert_problems(html) == []


def test_classes_are_limited_to_what_the_renderer_emits():
    # The renderer never emits these; nh3's class filter is the backstop for a renderer bug.
    from conversations.rendering import sanitize_html

    html = sanitize_html('<span class="nb conv-item copy-code">x</span><div class="math notice">y</div><a class="btn" href="https://ok.example">z</a>')
    assert 'class="nb"' in html and 'class="math"' in html
    assert "conv-item" not in html and "notice" not in html and "btn" not in html


def test_math_is_kept_as_escaped_tex_text():
    html = render_markdown("$<img src=x onerror=alert(1)>$ and $$\\href{javascript:alert(1)}{x}$$")
    assert '<span class="math math-inline">&lt;img src=x onerror=alert(1)&gt;</span>' in html
    assert inert_problems(html) == []


def test_the_checks_would_catch_the_payloads_unsanitised():
    """The assertions above are not vacuous: raw HTML rendering fails them for most payloads."""
    from markdown_it import MarkdownIt

    unsafe = MarkdownIt("commonmark", {"html": True})
    caught = [p for p in PAYLOADS if inert_problems(unsafe.render(p))]
    assert len(caught) > len(PAYLOADS) // 2
    page = '<div class="thread" id="thread"><article class="msg"><div class="msg-body markdown"><a href="javascript:x">a</a></div><p onclick="x">b</p></article></div><script>alert(1)</script>'
    assert len(page_problems(page)) == 4  # script URL (twice: scheme, URL rule), handler, inline payload


# --- the real pipeline: scripted reply → stored → socket frame and page --------------------------


def _page(user, url: str) -> str:
    client = Client()
    if user is not None:
        client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("hub_cleanup")
async def test_corpus_in_a_reply_and_a_message_never_becomes_script(llm, token, alice, conversation):
    reply_text = corpus_document()
    user_text = f"{TITLE_PAYLOAD}\n\n{corpus_document()}\n{token}"
    llm.script([{"text": reply_text, "tps": 0}], match=token)
    sock = Socket(alice, conversation.pk)
    assert (await sock.connect())[0]
    created = await sock.send_message(user_text)
    assert created["user_message"]["text"] == user_text  # the socket hands it back as text
    _, end = await sock.follow_to_end(created["reply"]["generation_id"])
    await sock.close()
    assert end["message"]["status"] == "complete"
    assert inert_problems(end["message"]["html"]) == []  # what chat.js puts in the page

    stored = await sync_to_async(lambda: list(Message.objects.filter(conversation=conversation).order_by("id").values_list("role", "content")))()
    assert stored == [("user", user_text), ("assistant", reply_text)]  # stored as written

    url = reverse("conversation_detail", args=[conversation.pk])
    page = await sync_to_async(_page)(alice, url)
    assert page_problems(page) == []
    # The person's text is on the page as text, in the thread, the title and the sidebar.
    assert "&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    title = (await sync_to_async(Conversation.objects.get)(pk=conversation.pk)).title
    assert title.startswith(TITLE_PAYLOAD)

    # Another page's sidebar shows the same title, escaped.
    home = await sync_to_async(_page)(alice, reverse("chat"))
    assert page_problems(home) == []
    assert "&lt;img src=x onerror=alert(1)&gt;" in home


# --- share page, import, downloads ---------------------------------------------------------------


def _corpus_conversation(owner) -> Conversation:
    from conversations import services

    conversation = services.conversation_create(owner=owner)
    question = Message.objects.create(conversation=conversation, role="user", content=f"{TITLE_PAYLOAD}\n\n{corpus_document()}")
    reply = Message.objects.create(conversation=conversation, parent=question, role="assistant", content=corpus_document(), model=conversation.model)
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf=reply, title=TITLE_PAYLOAD)
    conversation.refresh_from_db()
    return conversation


@pytest.mark.django_db
def test_share_page_with_the_corpus_is_inert_for_a_logged_out_visitor(alice):
    link = sharing.share_link_create(conversation=_corpus_conversation(alice))
    page = _page(None, reverse("shared_conversation", args=[link.token]))
    assert page_problems(page) == []
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.django_db
def test_imported_corpus_conversation_page_is_inert(alice, bob):
    exported = exports.conversation_export_json(conversation=_corpus_conversation(alice))
    imported = exports.conversation_import(owner=bob, raw=exported.encode()).conversation
    page = _page(bob, reverse("conversation_detail", args=[imported.pk]))
    assert page_problems(page) == []
    assert page.count("&lt;svg onload=alert(1)&gt;") >= 2  # the message (text) and the reply (rendered text)


@pytest.mark.django_db
def test_downloads_and_sources_are_never_served_as_html(client, alice):
    conversation = _corpus_conversation(alice)
    client.force_login(alice)
    reply = Message.objects.get(conversation=conversation, role="assistant")
    for name, args, kind in (
        ("conversation_export_markdown", [conversation.pk], "text/markdown"),
        ("conversation_export_json", [conversation.pk], "application/json"),
        ("message_source", [conversation.pk, reply.pk], "text/plain"),
    ):
        response = client.get(reverse(name, args=args))
        assert response.status_code == 200
        assert response["Content-Type"].startswith(kind)
        assert response["X-Content-Type-Options"] == "nosniff"
    data = json.loads(client.get(reverse("conversation_export_json", args=[conversation.pk])).content)
    assert data["messages"][1]["content"] == corpus_document()  # exported as written
