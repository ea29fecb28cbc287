"""Queue the Celery tasks finished replies call for (titles, compaction), off the reply's path.

A reply's end frame does not wait for them: they are published afterwards, from their own
thread, the tasks of a burst of replies over one broker connection, and the titles of a
burst as one message that a worker fans out. Publishing costs a broker round trip and about
a millisecond of CPU under the web process's GIL, and the first publish of a process also
connects: about 200 ms that used to sit in front of the first reply's end frame, on the
thread that stores replies.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)

TITLE = "title"
COMPACTION = "compaction"


def publish(tasks: list[tuple[str, int]]) -> None:
    """Queue (kind, conversation id) tasks over one producer; the titles of several
    conversations go as one message that a worker fans out (tasks.title_conversations).
    Never raises: a task that cannot be queued is logged (a missing title or a later
    compaction is not worth a failure)."""
    if not tasks:
        return
    from .tasks import compact_conversation, title_conversation, title_conversations

    unique = list(dict.fromkeys(tasks))
    titles = [conversation_id for kind, conversation_id in unique if kind == TITLE]
    calls = [(compact_conversation, (conversation_id,)) for kind, conversation_id in unique if kind == COMPACTION]
    if len(titles) > 1:
        calls.append((title_conversations, (titles,)))
    elif titles:
        calls.append((title_conversation, (titles[0],)))
    try:
        with title_conversation.app.producer_or_acquire() as producer:
            for task, args in calls:
                try:
                    task.apply_async(args, producer=producer)
                except Exception:
                    log.exception("Could not queue %s%s", task.name, args)
    except Exception:
        log.exception("Could not reach the task queue for %d tasks", len(tasks))


_soon: ThreadPoolExecutor | None = None


def publish_soon(tasks: list[tuple[str, int]]) -> None:
    """publish() from this process's publishing thread, without waiting for it: a send must not
    wait on the broker (a hung Redis held a send's database thread for seconds)."""
    global _soon
    if _soon is None:
        _soon = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chatsite-publish-soon")
    _soon.submit(publish, tasks)


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
