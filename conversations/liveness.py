"""Which runners (web processes' hubs) are alive, as Redis knows it, for the reaper.

A reply's heartbeat lives in the database, with its text. When the database is down, no
heartbeat can be written, and when it comes back the reaper could run before the runner
stores the reply's end: it would mark interrupted, with the checkpointed text, a reply whose
runner holds the whole answer and is about to store it. So each hub also says it is alive
in Redis (a key with a time to live, renewed by its watcher every second or so), and the
reaper leaves the replies of a live runner alone, for as long as that runner may keep
retrying (CHATSITE_FINAL_WRITE_RETRY_SECONDS). When Redis cannot say, the reaper goes by the
database heartbeat alone, as before.
"""

from __future__ import annotations

import logging

from django.conf import settings

log = logging.getLogger(__name__)


def key(runner: str) -> str:
    return f"{settings.CHANNEL_LAYER_PREFIX}:alive:{runner}"


def ttl_seconds() -> int:
    return max(2, round(settings.CHATSITE_LIVENESS_TTL_SECONDS))


def client():
    """An asyncio Redis client for the hub's watcher: short timeouts, no retries (a missed beat
    is tried again a second later)."""
    import redis.asyncio
    from redis.backoff import NoBackoff
    from redis.asyncio.retry import Retry

    return redis.asyncio.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=2, retry=Retry(NoBackoff(), 0))


async def beat(connection, runner: str) -> bytes | None:
    """Say `runner` is alive (an asyncio Redis client of the channel layer); returns what the
    key held before: None when it was missing (the first beat, or Redis lost its data)."""
    return await connection.set(key(runner), "1", ex=ttl_seconds(), get=True)


async def gone(connection, runner: str) -> None:
    await connection.delete(key(runner))


def alive(runners: set[str]) -> set[str]:
    """The runners among these that said they are alive; empty when Redis cannot tell."""
    runners = {r for r in runners if r}
    if not runners or not settings.REDIS_URL:
        return set()
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=2, retry=Retry(NoBackoff(), 0))
    try:
        ordered = sorted(runners)
        values = client.mget([key(r) for r in ordered])
        return {r for r, value in zip(ordered, values) if value is not None}
    except (redis.RedisError, OSError) as exc:
        log.warning("Cannot ask Redis which runners are alive (%s); going by heartbeats alone", exc)
        return set()
    finally:
        client.close()
