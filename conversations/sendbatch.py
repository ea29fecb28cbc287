"""Group commit for sends: the sends that arrive while one batch is being stored are stored
together as the next batch (services.message_send_many), in one transaction.

A lone send goes straight through as a batch of one, so there is no waiting on a timer. Under
a burst (hundreds of people sending within a few milliseconds) a batch costs a handful of
round trips instead of a handful per send; see docs/performance.md for what that does to the
time to first token.

If a batch fails as a whole (a database error, not a refusal), its sends are retried one by
one, so one bad send cannot fail the others.
"""

from __future__ import annotations

import asyncio
import logging

from django.conf import settings

from . import services
from .asyncdb import request_db
from .errors import ChatError

log = logging.getLogger(__name__)

MAX_BATCH = 100


class SendBatcher:
    """One per event loop (the hub owns it)."""

    def __init__(self) -> None:
        self._pending: list[tuple[services.SendRequest, asyncio.Future]] = []
        self._drainers: set[asyncio.Task] = set()
        self.batches = 0  # (for tests and the bench)

    async def send(self, request: services.SendRequest) -> services.SendResult:
        """Store one send; raises its ChatError when refused."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        # As many batches in flight as there are request threads (PostgreSQL: 2; SQLite: 1).
        if len(self._drainers) < settings.CHATSITE_DB_THREADS:
            task = asyncio.get_running_loop().create_task(self._drain())
            self._drainers.add(task)
            task.add_done_callback(self._drainers.discard)
        result = await future
        if isinstance(result, ChatError):
            raise result
        return result

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            self.batches += 1
            try:
                results = await request_db(services.message_send_many)(requests=[request for request, _ in batch])
            except Exception:
                log.warning("A batch of %d sends failed; storing them one by one", len(batch), exc_info=True)
                await asyncio.gather(*(self._alone(request, future) for request, future in batch))
                continue
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)

    async def _alone(self, request: services.SendRequest, future: asyncio.Future) -> None:
        try:
            result = (await request_db(services.message_send_many)(requests=[request]))[0]
        except Exception as exc:  # noqa: BLE001 - handed to the socket, which says it plainly
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(result)
