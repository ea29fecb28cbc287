"""Share links: a read-only snapshot of a conversation for anyone who has the link.

The snapshot is plain data taken when the link is made — the title, the model and the visible
thread's messages (role, text, time) — so the page shows neither later messages, nor who owns
the conversation, nor usage, costs or any database id. The token is the only key
(`secrets.token_urlsafe`, 192 bits). The owner can revoke a link at any time; a revoked link and
a deleted conversation's links answer 404 like a token that never existed.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from . import selectors
from .errors import ChatError
from .models import Conversation, Message, ShareLink

SNAPSHOT_VERSION = 1


def share_snapshot(*, conversation: Conversation) -> dict[str, Any]:
    """The visible thread as it is now, with nothing but what the shared page shows."""
    thread = selectors.conversation_thread(conversation=conversation)
    messages = [
        {"role": m.role, "content": m.content, "created_at": m.created_at.isoformat()}
        # A reply still being written is left out: the link shows finished text only.
        for m in thread
        if m.status != Message.Status.STREAMING and m.content.strip()
    ]
    return {
        "version": SNAPSHOT_VERSION,
        "title": conversation.display_title,
        "model": conversation.model,
        "created_at": timezone.now().isoformat(),
        "messages": messages,
    }


def share_link_create(*, conversation: Conversation) -> ShareLink:
    """A new link to a snapshot of `conversation` (the caller checked it is the person's own)."""
    snapshot = share_snapshot(conversation=conversation)
    if not snapshot["messages"]:
        raise ChatError("empty", "There is nothing to share yet: the conversation has no finished messages.")
    return ShareLink.objects.create(conversation=conversation, token=secrets.token_urlsafe(24), snapshot=snapshot)


def share_link_revoke(*, conversation: Conversation, link_id: int) -> ShareLink:
    """Revoke one of the conversation's links; Http404 if it has no such active link."""
    link = ShareLink.objects.filter(conversation=conversation, pk=link_id, revoked_at__isnull=True).first()
    if link is None:
        raise Http404("No such share link")
    link.revoked_at = timezone.now()
    link.save(update_fields=["revoked_at"])
    return link


def share_links_active(*, conversation: Conversation) -> QuerySet[ShareLink]:
    return ShareLink.objects.filter(conversation=conversation, revoked_at__isnull=True).order_by("-created_at", "-id")


_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")


def share_link_get_public(*, token: object) -> ShareLink:
    """The active link with this token, for anyone; Http404 for anything else."""
    # Only what token_urlsafe makes: anything else (a NUL, which PostgreSQL cannot even
    # compare) is no token.
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise Http404("No such share link")
    link = (
        ShareLink.objects.filter(token=token, revoked_at__isnull=True, conversation__deleted_at__isnull=True)
        .only("token", "snapshot", "created_at", "revoked_at")
        .first()
    )
    if link is None:
        raise Http404("No such share link")
    return link
