"""Following a reply over HTTP: Server-Sent Events, and waiting for the end.

An HTTP client follows a generation like a websocket does (docs/protocol.md): through this
process's hub when the reply runs here, through the channel layer (`hub.follow` to the
runner's hub channel, `relay.frame` back) when another process runs it, or from the stored
reply once it has finished. Frames land in an asyncio.Queue that the response's generator
drains on the event loop: no thread per stream, and the generation never waits for a slow
client. A client that goes away is unfollowed; the reply keeps going (only "stop" stops it).

Remote following is at-most-once (channels-redis): gaps are repaired by following again from
what we have, and when the runner is quiet for POLL_SECONDS the stored state is read, so a lost
final frame or a dead runner (marked interrupted by the reaper) still ends the stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from django.http import StreamingHttpResponse

from .. import frames
from ..asyncdb import request_db
from ..hub import get_hub
from ..models import Message
from . import selectors as api_selectors

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 15.0
POLL_SECONDS = 2.0
_USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
_FAILED = (Message.Status.ERROR, Message.Status.INTERRUPTED)
_STORED_PRECISION = Decimal("0.00000001")


@dataclass(frozen=True)
class Event:
    """One SSE event: `created`, `delta`, `done` or `error`."""

    name: str
    data: dict[str, Any] = field(hash=False)
    id: str | None = None

    @property
    def final(self) -> bool:
        return self.name in ("done", "error")


def encode(event: Event | None) -> str:
    """The wire form; None is a keep-alive comment (proxies close idle connections)."""
    if event is None:
        return ": keep-alive\n\n"
    head = f"id: {event.id}\n" if event.id is not None else ""
    # JSON escapes CR and LF inside strings, so the data is always a single line.
    return f"{head}event: {event.name}\ndata: {frames.dumps(event.data)}\n\n"


def sse_response(events: AsyncIterator[Event | None], *, first: tuple[Event, ...] = ()) -> StreamingHttpResponse:
    async def body() -> AsyncIterator[str]:
        # Closing the body (client gone) closes the events at once: that unfollows the reply.
        async with aclosing(events):
            for event in first:
                yield encode(event)
            async for event in events:
                yield encode(event)

    response = StreamingHttpResponse(body(), content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


def final_event(*, message_id: int, generation_id: str, status: str, error_code: str, error: str,
                usage: dict[str, Any], content_length: int) -> Event:
    data: dict[str, Any] = {
        "message_id": message_id,
        "generation_id": generation_id,
        "status": status,
        "error_code": error_code,
        "usage": {name: int(usage.get(name) or 0) for name in _USAGE_FIELDS},
        "cost": _usd(usage.get("cost")),
        "content_length": content_length,
    }
    if status in _FAILED:
        return Event("error", {"code": error_code or "internal", "message": error or "The reply failed.", **data})
    return Event("done", data)


def _final_from_end(end: dict[str, Any]) -> Event:
    message = end["message"]
    return final_event(
        message_id=message["id"], generation_id=end["generation_id"], status=message["status"],
        error_code=message.get("error_code", ""), error=message.get("error", ""),
        usage=message.get("usage") or {}, content_length=end.get("content_length", 0),
    )


def _final_from_message(message: Message) -> Event:
    return final_event(
        message_id=message.pk, generation_id=str(message.generation_id), status=message.status,
        error_code=message.error_code, error=message.error, usage=frames.usage_dict(message),
        content_length=len(message.content),
    )


def _usd(value: Any) -> str:
    """As stored (8 decimal places), so the final event and the reply's JSON agree to the digit."""
    try:
        return str(Decimal(str(value or 0)).quantize(_STORED_PRECISION))
    except (InvalidOperation, ValueError):
        return "0.00000000"


class QueueFollower:
    """The hub's Follower protocol on a queue; never blocks or fails the generation."""

    __slots__ = ("queue",)

    def __init__(self, queue: asyncio.Queue) -> None:
        self.queue = queue

    async def deliver(self, frame: str, *, final: bool, generation_id: str) -> None:
        self.queue.put_nowait(("frame", frame, final))


async def _get(queue: asyncio.Queue, timeout: float) -> Any:
    try:
        return await asyncio.wait_for(queue.get(), timeout)
    except TimeoutError:
        return None


async def _relay(layer: Any, channel: str, queue: asyncio.Queue) -> None:
    """Frames another process's hub sends to our channel, into the queue."""
    while True:
        try:
            message = await layer.receive(channel)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("Receiving relayed frames on %s failed; polling the stored reply meanwhile", channel, exc_info=True)
            await asyncio.sleep(1)
            continue
        if message.get("type") == "relay.frame":
            queue.put_nowait(("frame", message["frame"], bool(message.get("final"))))
        elif message.get("type") == "relay.gone":
            queue.put_nowait(("gone", "", False))


class _Following:
    def __init__(self, *, message_id: int, generation_id: str, offset: int) -> None:
        self.message_id = message_id
        self.gid = generation_id
        self.have = max(0, offset)  # code points the client has
        self.hub = get_hub()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.follower = QueueFollower(self.queue)
        self.local = False
        self.runner = ""  # the other process's hub channel we follow through
        self.runner_gone = ""  # ... and one that said the run is not (or no longer) there,
        self.gone_until = 0.0  # ... not to be asked again before this (loop time)
        self.channel = ""
        self.receiver: asyncio.Task | None = None

    async def events(self) -> AsyncIterator[Event | None]:
        await self.hub.ensure_listening()
        loop = asyncio.get_running_loop()
        last_sent = loop.time()
        while True:
            if not self.local:
                run = self.hub.get(self.gid)
                if run is not None and run.spec.message_id == self.message_id:
                    self.local = await self.hub.follow(self.gid, self.follower, self.have)
            if not self.local:
                message = await request_db(api_selectors.reply_by_id)(message_id=self.message_id)
                if message is None:
                    yield final_event(message_id=self.message_id, generation_id=self.gid, status=Message.Status.ERROR,
                                      error_code="not_found", error="This reply no longer exists.", usage={}, content_length=self.have)
                    return
                if str(message.generation_id) != self.gid:
                    # Continued as a new generation meanwhile: its text extends this one's.
                    await self._unfollow_remote()
                    self.gid, self.runner_gone = str(message.generation_id), ""
                    continue
                if message.status != Message.Status.STREAMING:
                    for event in self._rest_of_stored(message):
                        yield event
                    return
                await self._follow_remote(message.runner)
            while True:
                item = await _get(self.queue, KEEPALIVE_SECONDS if self.local else POLL_SECONDS)
                if item is None:
                    if loop.time() - last_sent >= KEEPALIVE_SECONDS:
                        last_sent = loop.time()
                        yield None
                    if self.local:
                        continue
                    break  # quiet: look at the stored state again
                kind, frame, final = item
                if kind == "gone":
                    # Finished meanwhile (the stored state will say so), or asked a moment before
                    # the runner registered the run: ask again after a poll, not in a loop.
                    self.runner_gone, self.runner = self.runner, ""
                    self.gone_until = loop.time() + POLL_SECONDS
                    break
                data = json.loads(frame)
                if data.get("generation_id") != self.gid:
                    continue
                if data.get("type") == "delta":
                    offset, text = int(data["offset"]), data["text"]
                    if offset > self.have:
                        await self._refollow()  # a relayed frame was lost
                        continue
                    if offset + len(text) > self.have:
                        start, self.have = self.have, offset + len(text)
                        last_sent = loop.time()
                        yield Event("delta", {"offset": start, "text": text[start - offset :]}, id=str(self.have))
                elif final:
                    if self.have < int(data.get("content_length", 0)):
                        # Only possible when relayed deltas were lost right before the end.
                        message = await request_db(api_selectors.reply_by_id)(message_id=self.message_id)
                        if message is not None and len(message.content) > self.have:
                            yield self._delta_from(message.content)
                    yield _final_from_end(data)
                    return

    def _delta_from(self, content: str) -> Event:
        start, self.have = self.have, len(content)
        return Event("delta", {"offset": start, "text": content[start:]}, id=str(self.have))

    def _rest_of_stored(self, message: Message) -> list[Event]:
        events = [self._delta_from(message.content)] if len(message.content) > self.have else []
        return [*events, _final_from_message(message)]

    async def _follow_remote(self, runner: str) -> None:
        if not runner or runner in (self.hub.channel_name, self.runner) or self.hub.layer is None:
            return  # not started yet, ours (and finished), or already followed
        if runner == self.runner_gone and asyncio.get_running_loop().time() < self.gone_until:
            return
        try:
            if not self.channel:
                self.channel = await self.hub.layer.new_channel()
                self.receiver = asyncio.get_running_loop().create_task(_relay(self.hub.layer, self.channel, self.queue))
            await self._unfollow_remote()
            self.runner = runner
            await self._refollow()
        except Exception:
            log.warning("Could not follow generation %s through %s; polling the stored reply", self.gid, runner, exc_info=True)

    async def _refollow(self) -> None:
        if self.runner and self.hub.layer is not None:
            await self.hub.layer.send(self.runner, {"type": "hub.follow", "generation_id": self.gid, "offset": self.have, "reply_channel": self.channel})

    async def _unfollow_remote(self) -> None:
        runner, self.runner = self.runner, ""
        if runner and self.hub.layer is not None:
            try:
                await self.hub.layer.send(runner, {"type": "hub.unfollow", "generation_id": self.gid, "reply_channel": self.channel})
            except Exception:  # the runner drops followers that stop answering anyway
                log.debug("Could not unfollow %s", self.gid, exc_info=True)

    async def close(self) -> None:
        if self.local:
            self.hub.unfollow(self.gid, self.follower)
        if self.receiver is not None:
            self.receiver.cancel()
        await self._unfollow_remote()


async def reply_events(*, message_id: int, generation_id: str, offset: int = 0) -> AsyncIterator[Event | None]:
    """The reply's text from `offset` as `delta` events, then exactly one `done` or `error`.

    Yields None after KEEPALIVE_SECONDS without anything to say. Closing the iterator (the HTTP
    client went away) unfollows the generation and leaves it running.
    """
    following = _Following(message_id=message_id, generation_id=generation_id, offset=offset)
    try:
        async for event in following.events():
            yield event
    finally:
        await following.close()


async def wait_for_end(*, message_id: int, generation_id: str) -> Event:
    """The final event of a reply, following it without its text."""
    events = reply_events(message_id=message_id, generation_id=generation_id, offset=sys.maxsize)
    try:
        async for event in events:
            if event is not None and event.final:
                return event
    finally:
        await events.aclose()
    raise RuntimeError("reply_events ended without a final event")  # pragma: no cover
