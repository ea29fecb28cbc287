"""Crash recovery: replies whose process died must not stay "streaming" forever."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from . import frames, liveness, services
from .models import Message


def reap_stale(*, stale_after: float | None = None) -> list[dict[str, Any]]:
    """Mark orphaned replies interrupted; return their end frames (with owner_id) to announce.

    `stale_after=0` marks every streaming reply: only for start-up of a single-process server.
    """
    alive: frozenset[str] = frozenset()
    if stale_after != 0:
        runners = services.generations_stale_runners(stale_after=stale_after)
        if not runners:
            return []
        alive = frozenset(liveness.alive(runners))
    with transaction.atomic():
        ids = list(Message.objects.filter(status=Message.Status.STREAMING).values_list("pk", flat=True))
        if not ids:
            return []
        services.generations_mark_interrupted(stale_after=stale_after, alive_runners=alive)
    reaped = Message.objects.filter(pk__in=ids, status=Message.Status.INTERRUPTED).select_related("conversation")
    ends = []
    for message in reaped:
        end = frames.end(message=message, conversation_title=message.conversation.title)
        end["owner_id"] = message.conversation.owner_id
        ends.append(end)
    return ends
