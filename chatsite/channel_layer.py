"""channels-redis's layer, with a receive that outlives a Redis outage.

channels-redis raises out of `receive()` when Redis fails, and Channels lets that exception end
the consumer: every websocket of every process closed with 1011 when Redis restarted or hung.
Here a failed receive waits and tries again (with backoff) for as long as Redis is away; what
the socket missed meanwhile is repaired when its hub sees Redis back (consumers:
`layer.recovered`). Sends and group calls still raise: their callers decide (hub, consumers).
"""

from __future__ import annotations

import asyncio
import logging

from channels_redis.core import RedisChannelLayer as BaseRedisChannelLayer
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

BACKOFF_MAX_SECONDS = 2.0


class RedisChannelLayer(BaseRedisChannelLayer):
    async def receive(self, channel: str) -> dict:
        delay = 0.1
        while True:
            try:
                return await super().receive(channel)
            except (RedisError, OSError) as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # Cancelled (the socket closed, the loop stopping), and the library turned
                    # the cancellation into a connection error: stop, do not retry.
                    raise asyncio.CancelledError() from exc
                log.warning("Receiving on %s failed (%s: %s); trying again in %.1f s", channel, type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_SECONDS)
