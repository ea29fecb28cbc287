"""Celery tasks: thin adapters over services."""

import logging

from asgiref.sync import async_to_sync
from celery import shared_task
from channels.layers import get_channel_layer

from . import groups, recovery

log = logging.getLogger(__name__)


@shared_task(acks_late=True, ignore_result=True)
def reap_stale_generations() -> int:
    """Mark replies whose runner's heartbeat went stale as interrupted, and tell their sockets."""
    ended = recovery.reap_stale()
    layer = get_channel_layer()
    for end in ended:
        async_to_sync(layer.group_send)(groups.user_group(end.pop("owner_id")), {"type": "chat.generation_end", "end": end})
    if ended:
        log.info("Marked %d orphaned replies as interrupted", len(ended))
    return len(ended)


@shared_task(acks_late=True, ignore_result=True)
def purge_deleted_conversations() -> int:
    """Remove for good the conversations deleted longer ago than the undo window (Celery beat)."""
    from . import workspace

    return workspace.conversations_purge_deleted()


# Summaries and titles: the model call can take a while and must survive a worker dying mid-way
# (acks_late + reject_on_worker_lost redeliver it); the work itself is idempotent.
_LLM_TASK = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True, "max_retries": 5}


@shared_task(bind=True, **_LLM_TASK)
def compact_conversation(self, conversation_id: int) -> int | None:
    from . import compaction
    from .llm import LLMError

    try:
        summary = compaction.compact(conversation_id)
    except LLMError as exc:
        if exc.retryable:
            raise self.retry(exc=exc, countdown=exc.retry_after or min(60, 5 * 2**self.request.retries))
        log.warning("Compaction of conversation %s failed: %s", conversation_id, exc.code)
        return None
    if summary is not None:
        _tell_owner(summary.conversation.owner_id, {"type": "chat.conversation_update", "conversation_id": conversation_id, "summarised_upto": summary.upto_id})
    return summary.pk if summary else None


@shared_task(bind=True, **_LLM_TASK)
def title_conversation(self, conversation_id: int) -> str | None:
    from . import titles
    from .llm import LLMError
    from .models import Conversation

    try:
        title = titles.name_conversation(conversation_id)
    except LLMError as exc:
        if exc.retryable:
            raise self.retry(exc=exc, countdown=exc.retry_after or min(60, 5 * 2**self.request.retries))
        log.warning("Naming conversation %s failed: %s", conversation_id, exc.code)
        return None
    if title:
        owner_id = Conversation.objects.filter(pk=conversation_id).values_list("owner_id", flat=True).first()
        if owner_id is not None:
            _tell_owner(owner_id, {"type": "chat.conversation_update", "conversation_id": conversation_id, "title": title})
    return title


@shared_task(acks_late=True, ignore_result=True)
def title_conversations(conversation_ids: list[int]) -> int:
    """Fan out the title tasks a web process queued as one message (queueing.publish): a
    burst of first replies ending together costs the web process one publish."""
    for conversation_id in conversation_ids:
        title_conversation.delay(conversation_id)
    return len(conversation_ids)


def _tell_owner(owner_id: int, event: dict) -> None:
    try:
        async_to_sync(get_channel_layer().group_send)(groups.user_group(owner_id), event)
    except Exception:
        log.exception("Could not tell user %s about conversation %s", owner_id, event.get("conversation_id"))
