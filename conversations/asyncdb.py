"""ORM calls from async code, on small dedicated thread pools.

Not Channels' thread-sensitive default (one thread for every socket of the process), and not
the loop's default executor (its threads would fight the event loop for the GIL, and DNS
lookups for new upstream connections queue there too). Requests a person waits on (send,
follow), background bookkeeping (checkpoints, finishing replies) and queueing Celery tasks get
separate pools so a big checkpoint never delays a send and a slow broker never delays a reply.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from channels.db import database_sync_to_async
from django.conf import settings

T = TypeVar("T")

_pools: dict[str, ThreadPoolExecutor] = {}


def _pool(name: str, size: int) -> ThreadPoolExecutor:
    pool = _pools.get(name)
    if pool is None:
        pool = _pools[name] = ThreadPoolExecutor(max_workers=size, thread_name_prefix=f"chatsite-db-{name}")
    return pool


def request_db(func: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """For work a person is waiting on."""
    return database_sync_to_async(func, thread_sensitive=False, executor=_pool("request", settings.CHATSITE_DB_THREADS))


def background_db(func: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """For checkpoints and finishing replies."""
    return database_sync_to_async(func, thread_sensitive=False, executor=_pool("background", 1))


def publishing(func: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """For queueing Celery tasks (conversations.queueing): broker round trips, kept off the
    threads that store replies."""
    return database_sync_to_async(func, thread_sensitive=False, executor=_pool("publish", 1))


__all__ = ["request_db", "background_db", "publishing"]
