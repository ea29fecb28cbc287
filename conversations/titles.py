"""Automatic conversation titles, written by the utility model after the first reply.

A title the person set is never overwritten: the final write is conditional on the title
still being a placeholder, so a rename that lands while the model is thinking wins.

The call keeps thinking out of the title's few tokens (utility.py). A reply with no text (its
thinking used the whole limit) is a failure the task retries and then logs, never an empty title;
its tokens are billed all the same, so they go in the ledger first.
"""

from __future__ import annotations

import logging

from django.conf import settings

from . import llm, metering, modelcache, selectors
from .cleantext import storable
from .models import Conversation, LLMModel, Message, UsageRecord
from .pricing import Prices
from .utility import utility_complete

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


def title_prompt(first: str, reply: str) -> str:
    return f"<message>\n{first[:3000]}\n</message>\n<reply>\n{reply[:3000]}\n</reply>\n\nTitle:"


def title_completion(*, model: LLMModel, first: str, reply: str) -> llm.Completion:
    """The utility call that names a conversation from its first message and reply."""
    return utility_complete(model=model, system=TITLER_SYSTEM, text_tokens=settings.CHATSITE_TITLE_MAX_TOKENS, prompt=title_prompt(first, reply))


def name_conversation(conversation_id: int) -> str | None:
    """Name the conversation from its first exchange; return the new title, or None if it
    already has a real title (or no finished reply yet)."""
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
    completion = metering.metered(
        lambda: title_completion(model=utility, first=first.content, reply=reply.content),
        user_id=conversation.owner_id, conversation_id=conversation.pk, kind=UsageRecord.Kind.TITLE, prices=Prices.of(utility),
        estimated=metering.estimate(model=utility, system=TITLER_SYSTEM, prompt=title_prompt(first.content, reply.content),
                                    text_tokens=settings.CHATSITE_TITLE_MAX_TOKENS),
    )
    if not completion.text.strip():
        raise llm.LLMError(
            "empty_reply", f"The title reply had no text (stop reason {completion.stop_reason or 'none'}).", retryable=True,
        )
    title = clean_title(completion.text)
    if not title:
        return None
    # .update() leaves updated_at alone: naming a chat must not reorder the sidebar.
    updated = Conversation.objects.filter(pk=conversation.pk, title_source__in=PLACEHOLDER_SOURCES).update(
        title=title, title_source=Conversation.TitleSource.AUTO
    )
    return title if updated else None
