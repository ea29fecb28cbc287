"""Queue the Celery tasks finished replies call for (titles, compaction), off the reply's path.

A reply's end frame does not wait for them: they are published afterwards, from their own
thread, the tasks of a burst of replies over one broker connection. Publishing one task
costs a broker round trip, and the first one of a process also connects: about 200 ms that
used to sit in front of the first reply's end frame, on the thread that stores replies.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

TITLE = "title"
COMPACTION = "compaction"


def publish(tasks: list[tuple[str, int]]) -> None:
    """Queue (kind, conversation id) tasks over one producer. Never raises: a task that
    cannot be queued is logged (a missing title or a later compaction is not worth a failure)."""
    if not tasks:
        return
    from .tasks import compact_conversation, title_conversation

    by_kind = {TITLE: title_conversation, COMPACTION: compact_conversation}
    try:
        with title_conversation.app.producer_or_acquire() as producer:
            for kind, conversation_id in dict.fromkeys(tasks):
                try:
                    by_kind[kind].apply_async((conversation_id,), producer=producer)
                except Exception:
                    log.exception("Could not queue the %s task of conversation %s", kind, conversation_id)
    except Exception:
        log.exception("Could not reach the task queue for %d tasks", len(tasks))


def publish_many(batches: list[list[tuple[str, int]]]) -> list[None]:
    """publish() for a Batcher: every finished reply's tasks in one go."""
    publish([task for tasks in batches for task in tasks])
    return [None] * len(batches)


def warm() -> None:
    """Open the broker connection before the first reply needs it (called from a thread)."""
    from .tasks import title_conversation

    try:
        with title_conversation.app.producer_or_acquire():
            pass
    except Exception:
        log.warning("The task queue is not reachable yet", exc_info=True)
