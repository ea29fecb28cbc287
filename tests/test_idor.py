"""Another person gets 404 for every one of alice's objects, on every URL that takes an id.

The URL list is walked from the resolver, so a view added later is covered without anyone
remembering to add it here. Sockets and the API have their own cross-user tests
(test_consumer, test_api, test_branches); this one covers every page and JSON view.
"""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from accounts import tokens
from conversations import services, sharing
from conversations.llm import Usage
from conversations.models import Message

pytestmark = pytest.mark.django_db

ID_KWARGS = {"conversation_id", "message_id", "link_id", "token_id"}


def _patterns(resolver=None, prefix: str = ""):
    for entry in (resolver or get_resolver()).url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            if route.startswith(("admin/", "api/")):
                continue  # the admin has its own permission tests; the API has test_api
            yield from _patterns(entry, route)
        elif isinstance(entry, URLPattern):
            yield route, entry


@pytest.fixture
def alices_objects(alice):
    conversation = services.conversation_create(owner=alice)
    user_message, reply, _ = services.message_send(conversation=conversation, content="alice's secret question")
    services.generation_finish(message_id=reply.pk, conversation_id=conversation.pk, generation_id=reply.generation_id,
                               content="alice's secret answer", status=Message.Status.COMPLETE, usage=Usage())
    link = sharing.share_link_create(conversation=conversation)
    token, _secret = tokens.api_token_create(user=alice, name="alice's laptop")
    return {
        "conversation_id": conversation.pk,
        "message_id": reply.pk,
        "link_id": link.pk,
        "token_id": token.pk,
    }


def _url(route: str, ids: dict[str, int]) -> str:
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(ids[m.group(1)]), route)


def test_every_url_with_an_id_is_404_for_another_person(client: Client, bob, alices_objects):
    client.force_login(bob)
    checked = []
    for route, pattern in _patterns():
        names = set(re.findall(r"<(?:\w+:)?(\w+)>", route))
        if not names or not names <= ID_KWARGS:
            continue
        url = _url(route, alices_objects)
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            # 405 (wrong method) is answered before any lookup, so it reveals nothing either.
            assert response.status_code in (404, 405), f"{method.upper()} {url} ({pattern.name}) gave {response.status_code} to bob"
            assert b"alice&#x27;s secret" not in response.content and b"alice's secret" not in response.content
        checked.append(pattern.name)
    # The walk really found the conversation pages (a broken walk must not pass silently).
    assert {"conversation_detail", "conversation_export_json", "message_source", "conversation_pin", "api_token_revoke"} <= set(checked)
    # And nothing was changed by bob's posts.
    from conversations.models import Conversation

    conversation = Conversation.objects.get(pk=alices_objects["conversation_id"])
    assert conversation.deleted_at is None and conversation.pinned_at is None and conversation.archived_at is None
