"""A person's events (a new message, a reply's end) from the process that produced them:
straight to the sockets in this process when those are all the person has.

The per-person channel-layer group (groups.user_group) stays the authority on which sockets
a person has, in any process. A channels-redis `group_send` costs four Redis round trips, a
serialised copy per socket, and a receive on every socket, the sender's own included. Most of
the time every socket of the person lives in this very process (often just the tab that
sent). So: read the group's members (one round trip); if each of them is a socket of this
process, call its handler directly; otherwise fall back to `group_send`, which reaches every
process. Local sockets are never delivered twice: it is one way or the other.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from channels.layers import InMemoryChannelLayer

from . import groups

log = logging.getLogger(__name__)


class Socket(Protocol):
    channel_name: str

    async def dispatch(self, message: dict[str, Any]) -> None: ...


class Registry:
    """The sockets of this process, per person. One per hub (event loop)."""

    def __init__(self) -> None:
        self._sockets: dict[int, dict[str, Socket]] = {}

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


async def _members(layer: Any, group: str) -> set[str] | None:
    """The group's channel names, or None when this layer cannot say cheaply."""
    if isinstance(layer, InMemoryChannelLayer):
        return set(layer.groups.get(group, {}))
    key = getattr(layer, "_group_key", None)
    if key is None or not hasattr(layer, "connection"):
        return None
    connection = layer.connection(layer.consistent_hash(group))
    return {name.decode("utf8") for name in await connection.zrange(key(group), 0, -1)}


async def tell_user(layer: Any, registry: Registry, user_id: int, event: dict[str, Any], *, skip: str = "") -> None:
    """Deliver `event` to every socket of the person (but `skip`, a channel name)."""
    group = groups.user_group(user_id)
    local = registry.of(user_id)
    members = await _members(layer, group) if local else None
    if members is None or not members <= local.keys():
        await layer.group_send(group, event)
        return
    for name in members:
        if name == skip:
            continue
        try:
            await local[name].dispatch(event)
        except Exception:  # one broken tab must not cost the others their event
            log.warning("Could not deliver %s to socket %s", event.get("type"), name, exc_info=True)
