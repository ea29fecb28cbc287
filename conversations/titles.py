"""Automatic conversation titles, written by the utility model after the first reply.

A title the person set is never overwritten: the final write is conditional on the title
still being a placeholder, so a rename that lands while the model is thinking wins.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction

from . import llm, modelcache, selectors
from .cleantext import storable
from .models import Conversation, Message, UsageRecord
from .pricing import Prices

log = logging.getLogger(__name__)

PLACEHOLDER_SOURCES = (Conversation.TitleSource.NONE, Conversation.TitleSource.FIRST_MESSAGE)
TITLER_SYSTEM = (
    "You name conversations for a sidebar. Reply with a short, specific title of at most six words "
    "in the conversation's language: no quotes, no trailing punctuation, nothing else."
)


def clean_title(text: str) -> str:
    line = next((l for l in text.strip().splitlines() if l.strip()), "")
    line = line.strip().strip("\"'“”‘’`*#").strip()
    if line.lower().startswith("title:"):
        line = line[6:].strip()
    return storable(line.rstrip(".!?;:").strip()[:80])


def name_conversation(conversation_id: int) -> str | None:
    """Name the conversation from its first exchange; return the new title, or None if it
    already has a real title (or no finished reply yet)."""
    from .services import usage_record

    # A deleted conversation (even one that can still be restored) is not worth a title.
    conversation = Conversation.objects.filter(pk=conversation_id, deleted_at__isnull=True).first()
    if conversation is None or conversation.title_source not in PLACEHOLDER_SOURCES:
        return None
    thread = selectors.conversation_thread(conversation=conversation)
    first = next((m for m in thread if m.role == Message.Role.USER), None)
    reply = next((m for m in thread if m.role == Message.Role.ASSISTANT and m.content.strip()), None)
    if first is None or reply is None:
        return None
    utility = modelcache.utility_model() or modelcache.llm_model(conversation.model)
    if utility is None:
        return None
    text, usage = llm.complete(
        model=utility.model_id,
        system=TITLER_SYSTEM,
        messages=[{"role": "user", "content": f"<message>\n{first.content[:3000]}\n</message>\n<reply>\n{reply.content[:3000]}\n</reply>\n\nTitle:"}],
        max_tokens=settings.CHATSITE_TITLE_MAX_TOKENS,
    )
    usage_record(
        user_id=conversation.owner_id, conversation_id=conversation.pk, message_id=None,
        kind=UsageRecord.Kind.TITLE, usage=usage, prices=Prices.of(utility),
    )
    title = clean_title(text)
    if not title:
        return None
    # .update() leaves updated_at alone: naming a chat must not reorder the sidebar.
    updated = Conversation.objects.filter(pk=conversation.pk, title_source__in=PLACEHOLDER_SOURCES).update(
        title=title, title_source=Conversation.TitleSource.AUTO
    )
    return title if updated else None
