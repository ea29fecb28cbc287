"""A person's events (a new message, a reply's end) from the process that produced them:
straight to the sockets in this process when those are all the person has.

The per-person channel-layer group (groups.user_group) stays the authority on which sockets
a person has, in any process. A channels-redis `group_send` costs four Redis round trips, a
serialised copy per socket, and a receive on every socket, the sender's own included. Most of
the time every socket of the person lives in this very process (often just the tab that
sent). So: read the group's members (one round trip); if each of them is a socket of this
process, call its handler directly; otherwise fall back to `group_send`, which reaches every
process. Local sockets are never delivered twice: it is one way or the other.

The reads of many people at once (a burst of sends, or of replies ending) go to Redis as one
pipeline (a `Batcher` per Redis host): one connection and one round trip instead of one of
each per person. A burst of two hundred reads otherwise opened up to two hundred new
connections on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from channels.layers import InMemoryChannelLayer
from django.conf import settings
from redis.exceptions import RedisError

from . import groups
from .batching import Batcher

log = logging.getLogger(__name__)


class Socket(Protocol):
    channel_name: str

    async def dispatch(self, message: dict[str, Any]) -> None: ...


class Registry:
    """The sockets of this process, per person. One per hub (event loop)."""

    def __init__(self) -> None:
        self._sockets: dict[int, dict[str, Socket]] = {}
        self._readers: dict[tuple[int, int], Batcher[str, set[str]]] = {}

    def add(self, user_id: int, socket: Socket) -> None:
        self._sockets.setdefault(user_id, {})[socket.channel_name] = socket

    def discard(self, user_id: int, socket: Socket) -> None:
        sockets = self._sockets.get(user_id)
        if sockets is not None:
            sockets.pop(socket.channel_name, None)
            if not sockets:
                del self._sockets[user_id]

    def of(self, user_id: int) -> dict[str, Socket]:
        return self._sockets.get(user_id, {})

    def all(self) -> list[Socket]:
        return [socket for sockets in self._sockets.values() for socket in sockets.values()]

    def reader(self, layer: Any, shard: int) -> Batcher[str, set[str]]:
        """Group-member reads on one Redis host of the channel layer, pipelined."""
        key = (id(layer), shard)
        reader = self._readers.get(key)
        if reader is None:
            async def read(keys: list[str]) -> list[set[str]]:
                async with layer.connection(shard).pipeline(transaction=False) as pipe:
                    for name in keys:
                        pipe.zrange(name, 0, -1)
                    rows = await pipe.execute()
                return [{name.decode("utf8") for name in row} for row in rows]

            reader = self._readers[key] = Batcher(read, run=_as_is)
        return reader


def _as_is(many: Any) -> Any:
    return many  # (the Batcher's `run` for a `many` that is already a coroutine function)


async def _members(layer: Any, registry: Registry, group: str) -> set[str] | None:
    """The group's channel names, or None when this layer cannot say cheaply."""
    if isinstance(layer, InMemoryChannelLayer):
        return set(layer.groups.get(group, {}))
    key = getattr(layer, "_group_key", None)
    if key is None or not hasattr(layer, "connection"):
        return None
    return await registry.reader(layer, layer.consistent_hash(group)).submit(key(group))


async def tell_user(layer: Any, registry: Registry, user_id: int, event: dict[str, Any], *, skip: str = "", redis_ok: bool = True) -> None:
    """Deliver `event` to every socket of the person (but `skip`, a channel name).

    When Redis is down or hung (`redis_ok` False, or it fails now), the sockets of this process
    still get it: the others learn what they missed when their process is back in touch with
    Redis (consumers: `layer.recovered`).
    """
    group = groups.user_group(user_id)
    local = registry.of(user_id)
    timeout = settings.CHATSITE_RELAY_SEND_TIMEOUT_SECONDS
    try:
        if not redis_ok and not isinstance(layer, InMemoryChannelLayer):
            raise ConnectionError("Redis is known to be down")
        members = await asyncio.wait_for(_members(layer, registry, group), timeout) if local else None
        if members is None or not members <= local.keys():
            await asyncio.wait_for(layer.group_send(group, event), timeout)
            return
    except (TimeoutError, RedisError, OSError) as exc:
        log.warning("Could not reach Redis for %s (%s); telling this process's sockets only", event.get("type"), type(exc).__name__)
        members = set(local)
    for name in members:
        if name == skip:
            continue
        try:
            await local[name].dispatch(event)
        except Exception:  # one broken tab must not cost the others their event
            log.warning("Could not deliver %s to socket %s", event.get("type"), name, exc_info=True)
