"""The process's generation hub: runs replies independently of any websocket.

One hub per process (per event loop). It owns the running generations, batches their deltas on
a short timer and hands one prebuilt frame to every follower, checkpoints all live replies to
the database in one thread call per interval, and listens on its own channel-layer channel so
sockets served by other processes can follow or stop its generations.

Hot path per text delta: one list append and one set add. No I/O, no JSON, no ORM.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings

from . import frames, llm, queueing, renderpool, services
from .asyncdb import background_db, publishing, request_db
from .batching import Batcher
from .fanout import Registry
from .services import GenerationSpec

log = logging.getLogger(__name__)


class Follower(Protocol):
    """Anything that takes frames for a generation: a local consumer or a remote channel."""

    async def deliver(self, frame: str, *, final: bool, generation_id: str) -> None: ...


class Run:
    """One live generation's state. Touched only on the event loop (not thread-safe)."""

    __slots__ = (
        "spec", "gid", "parts", "length", "flushed_parts", "flushed_length", "checkpointed_length",
        "followers", "task", "stop_requested", "started", "first_token_at", "done",
    )

    def __init__(self, spec: GenerationSpec) -> None:
        self.spec = spec
        self.gid = str(spec.generation_id)
        self.parts: list[str] = [spec.initial_text] if spec.initial_text else []
        self.length = len(spec.initial_text)  # code points received so far
        self.flushed_parts = 0
        self.flushed_length = 0  # code points already sent to followers
        self.checkpointed_length = self.length
        self.followers: set[Follower] = set()
        self.task: asyncio.Task | None = None
        self.stop_requested = False
        self.started = time.monotonic()
        self.first_token_at: float | None = None
        self.done = False

    def text(self) -> str:
        # Compact the already-flushed head in place (the appender holds this list's append).
        if self.flushed_parts > 1:
            self.parts[: self.flushed_parts] = ["".join(self.parts[: self.flushed_parts])]
            self.flushed_parts = 1
        return "".join(self.parts)

    def pending(self) -> str:
        return "".join(self.parts[self.flushed_parts:])


class RemoteFollower:
    """A socket on another process, reached through the channel layer.

    It is sent everything from what it has (`sent`) on every flush, so a dropped or refused
    channel message (channels-redis is at-most-once) is healed by the next one.
    """

    __slots__ = ("channel", "sent", "layer")

    def __init__(self, channel: str, sent: int, layer: Any) -> None:
        self.channel = channel
        self.sent = sent
        self.layer = layer

    def __hash__(self) -> int:
        return hash(self.channel)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemoteFollower) and other.channel == self.channel

    async def deliver(self, frame: str, *, final: bool, generation_id: str) -> None:
        try:
            await self.layer.send(self.channel, {"type": "relay.frame", "frame": frame, "final": final, "generation_id": generation_id})
        except ChannelFull:
            log.warning("Follower channel %s is full; it will catch up on the next frame", self.channel)
            raise


class Hub:
    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}
        self._dirty: set[Run] = set()
        self._ticker: asyncio.Task | None = None
        self._listener: asyncio.Task | None = None
        self.channel_name: str = ""
        self.layer = None
        # Group commit for the two bursts: sends, and replies ending (see batching).
        self.sends = Batcher(lambda requests: services.message_send_many(requests), run=request_db, concurrency=lambda: settings.CHATSITE_DB_THREADS)
        self.endings = Batcher(lambda endings: _persist_final_many(endings), run=background_db)
        # Titles and compaction steps of finished replies, queued after their end frames.
        self.followups = Batcher(queueing.publish_many, run=publishing)
        self._background: set[asyncio.Task] = set()
        self.sockets = Registry()  # this process's sockets per person (fanout)
        self.stats = {"started": 0, "finished": 0, "checkpoints": 0, "checkpoint_statements": 0, "frames": 0}

    # --- lifecycle -----------------------------------------------------------------------

    def queue_followups(self, tasks: list[tuple[str, int]]) -> None:
        """Queue a finished reply's Celery tasks in the background (queueing.publish)."""
        if tasks:
            self._in_background(self.followups.submit(tasks))

    def _in_background(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)  # a reference, so it is not collected mid-way
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("Background work failed", exc_info=task.exception())

    async def ensure_listening(self) -> str:
        """Open this process's hub channel (idempotent) and return its name."""
        if self._listener is None or self._listener.done():
            self.layer = get_channel_layer()
            # Default prefix on purpose: channels-redis receives every "specific.<client>!" channel of
            # the process through one BRPOP under one lock; another prefix would starve the sockets.
            self.channel_name = await self.layer.new_channel()
            self._listener = asyncio.get_running_loop().create_task(self._listen())
            renderpool.warm()
            self._in_background(publishing(queueing.warm)())  # the broker connection, before a reply needs it
            # The SDK client (its HTTP transport loads the CA store and imports on first use:
            # 40–60 ms of CPU that would otherwise delay the first burst of replies).
            llm.async_client()
        return self.channel_name

    def start(self, spec: GenerationSpec, runner: Callable[["Hub", Run], Awaitable[None]]) -> Run:
        run = Run(spec)
        self.runs[run.gid] = run
        run.task = asyncio.get_running_loop().create_task(runner(self, run), name=f"generation-{run.gid}")
        self.stats["started"] += 1
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(self._tick())
        return run

    async def close(self) -> None:
        """Cancel every run and the background tasks (tests; process shutdown); give the
        Celery tasks of finished replies a few seconds to be queued."""
        tasks = [r.task for r in self.runs.values() if r.task] + [t for t in (self._ticker, self._listener) if t]
        for task in tasks:
            task.cancel()
        if tasks:
            # A channel-layer receive can take a while to unwind after cancel; don't hang on it.
            await asyncio.wait(tasks, timeout=2)
        if self._background:
            await asyncio.wait(set(self._background), timeout=5)

    def get(self, generation_id: str) -> Run | None:
        return self.runs.get(generation_id)

    # --- the hot path --------------------------------------------------------------------

    def appender(self, run: Run) -> Callable[[str], None]:
        parts_append = run.parts.append
        dirty_add = self._dirty.add

        def on_text(text: str) -> None:
            parts_append(text)
            run.length += len(text)
            if run.first_token_at is None:
                run.first_token_at = time.monotonic()
            dirty_add(run)

        return on_text

    async def flush(self, run: Run) -> None:
        """Send what arrived since the last flush as one frame to every follower."""
        self._dirty.discard(run)
        if run.flushed_length == run.length:
            return
        text = run.pending()
        offset = run.flushed_length
        run.flushed_parts = len(run.parts)
        run.flushed_length = run.length
        frame = frames.delta(run.gid, offset, text)
        self.stats["frames"] += 1
        for follower in tuple(run.followers):
            if isinstance(follower, RemoteFollower) and follower.sent != offset:
                # It missed something: send it everything from what it has.
                catch_up = run.text()[follower.sent:]
                await self._deliver(run, follower, frames.delta(run.gid, follower.sent, catch_up), final=False, sent=run.length)
            else:
                await self._deliver(run, follower, frame, final=False, sent=run.length)

    async def _deliver(self, run: Run, follower: Follower, frame: str, *, final: bool, sent: int) -> None:
        try:
            await follower.deliver(frame, final=final, generation_id=run.gid)
        except ChannelFull:
            return
        except Exception:  # a socket that went away must not break the generation
            log.debug("Dropping follower of %s", run.gid, exc_info=True)
            run.followers.discard(follower)
            return
        if isinstance(follower, RemoteFollower):
            follower.sent = sent

    async def _tick(self) -> None:
        """Flush on a fixed schedule; checkpoint in the background, never in the flush path."""
        batch = settings.CHATSITE_DELTA_BATCH_SECONDS
        checkpoint_every = settings.CHATSITE_CHECKPOINT_SECONDS
        loop = asyncio.get_running_loop()
        next_flush = loop.time() + batch
        next_checkpoint = loop.time() + checkpoint_every
        checkpointing: asyncio.Task | None = None
        while self.runs:
            await asyncio.sleep(max(0.0, next_flush - loop.time()))
            next_flush = max(next_flush + batch, loop.time())
            for run in tuple(self._dirty):
                await self.flush(run)
            if loop.time() >= next_checkpoint and (checkpointing is None or checkpointing.done()):
                next_checkpoint = loop.time() + checkpoint_every
                checkpointing = loop.create_task(self.checkpoint())

    async def checkpoint(self) -> None:
        """Persist partial text + heartbeat of every live run in one thread call."""
        items: list[tuple[int, uuid.UUID, str | None]] = []
        for run in tuple(self.runs.values()):
            if run.done:
                continue
            changed = run.length != run.checkpointed_length
            items.append((run.spec.message_id, run.spec.generation_id, run.text() if changed else None))
            run.checkpointed_length = run.length
        if not items:
            return
        try:
            statements = await background_db(services.generation_checkpoint)(items=items, runner=self.channel_name)
            self.stats["checkpoints"] += 1
            self.stats["checkpoint_statements"] += statements
        except Exception:
            log.exception("Checkpoint of %d generations failed; will retry next interval", len(items))
            for run in self.runs.values():
                run.checkpointed_length = -1

    # --- following -----------------------------------------------------------------------

    async def follow(self, generation_id: str, follower: Follower, offset: int) -> bool:
        """Attach a follower that has `offset` code points; send it what it is missing first."""
        run = self.runs.get(generation_id)
        if run is None or run.done:
            return False
        run.followers.discard(follower)  # following again = resend from `offset` (gap repair)
        offset = max(0, min(offset, run.flushed_length))
        if offset < run.flushed_length:
            catch_up = run.text()[offset:run.flushed_length]
            await self._deliver(run, follower, frames.delta(run.gid, offset, catch_up), final=False, sent=run.flushed_length)
        elif isinstance(follower, RemoteFollower):
            follower.sent = run.flushed_length
        run.followers.add(follower)
        return True

    def unfollow(self, generation_id: str, follower: Follower) -> None:
        run = self.runs.get(generation_id)
        if run is not None:
            run.followers.discard(follower)

    def stop(self, generation_id: str) -> bool:
        run = self.runs.get(generation_id)
        if run is None or run.done or run.task is None:
            return False
        run.stop_requested = True
        run.task.cancel()
        return True

    async def finish(self, run: Run, end_frame: dict[str, Any]) -> None:
        """Flush the tail, send the one final frame to every follower, and forget the run."""
        await self.flush(run)
        run.done = True
        frame = frames.dumps(end_frame)
        for follower in tuple(run.followers):
            await self._deliver(run, follower, frame, final=True, sent=run.length)
        run.followers.clear()
        self.runs.pop(run.gid, None)
        self._dirty.discard(run)
        self.stats["finished"] += 1

    # --- the hub channel: other processes follow and stop our runs -----------------------

    async def _listen(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel_name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Hub channel receive failed; retrying")
                await asyncio.sleep(1)
                continue
            try:
                await self._handle(message)
            except Exception:
                log.exception("Hub failed to handle %s", message.get("type"))

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        gid = str(message.get("generation_id", ""))
        if kind == "hub.follow":
            follower = RemoteFollower(message["reply_channel"], int(message.get("offset", 0)), self.layer)
            if not await self.follow(gid, follower, follower.sent):
                # Not (or no longer) ours: tell the socket to read the stored state.
                await self.layer.send(message["reply_channel"], {"type": "relay.gone", "generation_id": gid})
        elif kind == "hub.unfollow":
            self.unfollow(gid, RemoteFollower(message["reply_channel"], 0, self.layer))
        elif kind == "hub.stop":
            self.stop(gid)


_hubs: dict[int, Hub] = {}


def get_hub() -> Hub:
    """The hub of the running event loop (tests run several loops in one process)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(id(loop))
    if hub is None:
        _hubs.clear()
        hub = _hubs[id(loop)] = Hub()
    return hub


def _persist_final_many(endings):
    from .runner import persist_final_many  # (runner imports this module)

    return persist_final_many(endings)

