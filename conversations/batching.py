"""Group commit: calls that arrive while a batch is in the database go together as the next one.

Used for the two bursts of the streaming engine: sends (services.message_send_many) and the
ends of replies (runner.persist_final_many). A lone call goes straight through as a batch of
one, so nothing waits on a timer. Under a burst (hundreds of people sending, or hundreds of
replies ending, within a few milliseconds) a batch costs a handful of round trips instead of
a handful per call. Every round trip matters: after each one, the ORM thread must win the GIL
back from the busy event loop. docs/performance.md has the figures.

`many(items)` returns one result per item, in order: a value, or an exception instance (a
refusal such as ChatError) for that item alone. If a batch fails as a whole (a database error),
its items are retried one by one, so one bad item cannot fail the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)

MAX_BATCH = 100


class Batcher(Generic[T, R]):
    """One per event loop (the hub owns them)."""

    def __init__(self, many: Callable[[list[T]], list[R | BaseException]], *, run: Callable[..., Callable[..., Awaitable[Any]]],
                 concurrency: Callable[[], int] = lambda: 1, whole: Callable[[BaseException], bool] = lambda exc: False) -> None:
        self._many = many
        self._run = run  # asyncdb.request_db or background_db
        self._concurrency = concurrency
        # Failures that say nothing about the items (the database is unreachable): every item
        # of the batch gets it at once, instead of each waiting out the same failure alone.
        self._whole = whole
        self._pending: list[tuple[T, asyncio.Future]] = []
        self._drainers: set[asyncio.Task] = set()
        self.batches = 0  # (for tests and the bench)

    async def submit(self, item: T) -> R:
        """The item's result; raises the item's own exception."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if len(self._drainers) < self._concurrency():
            task = asyncio.get_running_loop().create_task(self._drain())
            self._drainers.add(task)
            task.add_done_callback(self._drainers.discard)
        result = await future
        if isinstance(result, BaseException):
            raise result
        return result

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                self.batches += 1
                try:
                    results = await self._run(self._many)([item for item, _ in batch])
                except Exception as exc:
                    if self._whole(exc):
                        log.warning("A batch of %d failed as a whole: %s", len(batch), exc)
                        for _, future in batch:
                            if not future.done():
                                future.set_result(exc)
                        continue
                    log.warning("A batch of %d failed; running them one by one", len(batch), exc_info=True)
                    await asyncio.gather(*(self._alone(item, future) for item, future in batch))
                    continue
                for (_, future), result in zip(batch, results):
                    if not future.done():
                        future.set_result(result)
        finally:
            # At once, in the same step as the last look at _pending: a done-callback runs one
            # loop iteration later, and an item submitted in between (by a caller woken by the
            # results just set) would find no free drainer and wait forever.
            self._drainers.discard(asyncio.current_task())

    async def _alone(self, item: T, future: asyncio.Future) -> None:
        try:
            result = (await self._run(self._many)([item]))[0]
        except Exception as exc:  # noqa: BLE001 - handed to the caller, which reports it
            result = exc
        if not future.done():
            future.set_result(result)
