"""Every render of a reply is bounded in time, not only the end of a streamed one: the
conversation page, the share page and a branch switch render in a helper process with
CHATSITE_RENDER_TIMEOUT_SECONDS per text, and a text past it is shown as plain text
(issue 13, item 6)."""

from __future__ import annotations

import uuid

import pytest
from django.urls import reverse

from conversations import consumers, renderpool, services, sharing
from conversations.models import Conversation, Message

pytestmark = pytest.mark.django_db

# Linear to render, but far longer than the limit below: tens of thousands of emphasis runs.
SLOW = "*slow* _text_ `x` " * 40_000


@pytest.fixture
def slow_reply(alice, settings):
    settings.CHATSITE_RENDER_TIMEOUT_SECONDS = 0.05
    conversation = services.conversation_create(owner=alice)
    question = Message.objects.create(conversation=conversation, role="user", content="q", status="complete")
    # New to the rendered-HTML cache (shared through Redis by every run): rendered here, now.
    text = SLOW + uuid.uuid4().hex
    reply = Message.objects.create(conversation=conversation, role="assistant", content=text, status="complete", parent=question)
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf=reply)
    conversation.refresh_from_db()
    yield conversation, reply
    renderpool.shutdown()  # (a helper killed for being too slow is replaced by the next call)


def _shown_as_plain_text(html: str) -> bool:
    return "<pre>*slow* _text_ `x` *slow*" in html and "<em>slow</em>" not in html


def test_the_conversation_page_shows_a_reply_too_slow_to_render_as_plain_text(client, alice, slow_reply):
    conversation, _ = slow_reply
    client.force_login(alice)
    response = client.get(reverse("conversation_detail", args=[conversation.pk]))
    assert response.status_code == 200
    assert _shown_as_plain_text(response.content.decode())


def test_the_share_page_shows_a_reply_too_slow_to_render_as_plain_text(client, slow_reply):
    conversation, _ = slow_reply
    link = sharing.share_link_create(conversation=conversation)
    response = client.get(reverse("shared_conversation", args=[link.token]))
    assert response.status_code == 200
    assert _shown_as_plain_text(response.content.decode())


def test_a_branch_switch_shows_a_reply_too_slow_to_render_as_plain_text(slow_reply):
    conversation, reply = slow_reply
    payload = consumers._switch_branch(conversation=conversation, message_id=reply.pk, client_id="c1")
    assert _shown_as_plain_text(payload["messages"][-1]["html"])


def test_a_plain_text_shown_for_slowness_is_not_cached(client, alice, slow_reply, settings):
    conversation, _ = slow_reply
    client.force_login(alice)
    client.get(reverse("conversation_detail", args=[conversation.pk]))
    settings.CHATSITE_RENDER_TIMEOUT_SECONDS = 60
    page = client.get(reverse("conversation_detail", args=[conversation.pk])).content.decode()
    assert "<em>slow</em>" in page  # rendered this time: the plain text was not kept
