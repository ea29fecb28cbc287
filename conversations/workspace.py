"""Writes for the person's workspace: pin, archive, delete with undo, and the purge of deletions.

Each is one conditional UPDATE that leaves `updated_at` alone (QuerySet.update skips auto_now):
pinning or archiving a conversation is not activity in it, and an undone delete puts it back
where it was. A delete is soft for CHATSITE_UNDO_DELETE_SECONDS; every owner-scoped read treats
it as gone at once, and a Celery beat task removes it for good afterwards. The usage ledger
keeps its spend (UsageRecord.conversation is SET_NULL).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.http import Http404
from django.utils import timezone

from . import groups, sidebar
from .models import Conversation, Message

log = logging.getLogger(__name__)

# Bounded work per purge run; the next run takes the rest.
PURGE_BATCH = 200


def _set(conversation: Conversation, **changes: object) -> Conversation:
    Conversation.objects.filter(pk=conversation.pk).update(**changes)
    for name, value in changes.items():
        setattr(conversation, name, value)
    return conversation


def conversation_pin(*, conversation: Conversation) -> Conversation:
    if conversation.pinned_at is not None:
        return conversation
    return _set(conversation, pinned_at=timezone.now())


def conversation_unpin(*, conversation: Conversation) -> Conversation:
    return _set(conversation, pinned_at=None)


def conversation_archive(*, conversation: Conversation) -> Conversation:
    if conversation.archived_at is not None:
        return conversation
    return _set(conversation, archived_at=timezone.now())


def conversation_unarchive(*, conversation: Conversation) -> Conversation:
    return _set(conversation, archived_at=None)


def conversation_delete(*, conversation: Conversation) -> Conversation:
    """Soft delete: gone from every owner-scoped read now, restorable for a few seconds.

    A reply still being written is stopped (it would go on costing tokens); its text and its
    cost are kept like any stopped reply's.
    """
    _set(conversation, deleted_at=timezone.now())
    for message in Message.objects.filter(conversation=conversation, status=Message.Status.STREAMING):
        reply_stop(message=message)
    return conversation


def conversation_destroy(*, conversation: Conversation) -> None:
    """Delete for good at once, with no undo (the API's DELETE)."""
    with transaction.atomic():
        # The conversation row first, then its messages, as every writer does (see
        # services._lock_finishing): Django's delete collector would otherwise take the rows
        # in the order its statements happen to come in. The purge locks its rows first too.
        list(Conversation.objects.select_for_update().filter(pk=conversation.pk).values_list("pk", flat=True))
        conversation.delete()


def conversation_undo_delete(*, user: AbstractBaseUser, conversation_id: int) -> Conversation:
    """Restore a conversation deleted less than CHATSITE_UNDO_DELETE_SECONDS ago; Http404 otherwise.

    One conditional UPDATE: on PostgreSQL it waits for a purge holding the row and then finds
    nothing to restore, so it is either the undo or the purge, never both.
    """
    conversation = sidebar.conversation_get_deleted_for_user(user=user, conversation_id=conversation_id)
    cutoff = timezone.now() - timedelta(seconds=settings.CHATSITE_UNDO_DELETE_SECONDS)
    if not Conversation.objects.filter(pk=conversation.pk, deleted_at__gte=cutoff).update(deleted_at=None):
        raise Http404("No such conversation")
    conversation.deleted_at = None
    return conversation


def conversations_purge_deleted(*, now: datetime | None = None, older_than: float | None = None) -> int:
    """Delete for good what was soft-deleted longer ago than the undo window. Idempotent; safe to
    run on several workers at once (PostgreSQL skips rows another purge has locked)."""
    now = now or timezone.now()
    seconds = settings.CHATSITE_UNDO_DELETE_SECONDS if older_than is None else older_than
    cutoff = now - timedelta(seconds=seconds)
    purged = 0
    with transaction.atomic():
        due = Conversation.objects.filter(deleted_at__isnull=False, deleted_at__lt=cutoff).order_by("deleted_at")
        ids = list(due.select_for_update(skip_locked=True).values_list("pk", flat=True)[:PURGE_BATCH])
        if ids:
            # Re-checked under the lock: an undo that won the race has cleared deleted_at.
            _, per_model = Conversation.objects.filter(pk__in=ids, deleted_at__lt=cutoff).delete()
            purged = per_model.get(Conversation._meta.label, 0)
    if purged:
        log.info("Purged %d deleted conversations", purged)
    return purged


def reply_stop(*, message: Message) -> None:
    """Stop a running reply from synchronous code: its runner's hub channel takes the command,
    on this process or another (the same path the websocket's Stop takes across processes)."""
    if not message.runner or not message.generation_id:
        return
    try:
        async_to_sync(get_channel_layer().send)(message.runner, {"type": "hub.stop", "generation_id": str(message.generation_id)})
    except Exception:
        # The reply still ends by itself; the reaper marks it if its process is gone.
        log.exception("Could not stop reply %s of a deleted conversation", message.pk)


def tell_owner(*, conversation: Conversation, **change: object) -> None:
    """Tell every socket of the person (other tabs' sidebars) about a change; never fails the write."""
    try:
        async_to_sync(get_channel_layer().group_send)(
            groups.user_group(conversation.owner_id),
            {"type": "chat.conversation_update", "conversation_id": conversation.pk, **change},
        )
    except Exception:
        log.exception("Could not tell user %s about conversation %s", conversation.owner_id, conversation.pk)
