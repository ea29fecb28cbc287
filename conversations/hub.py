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
from redis.exceptions import RedisError
from channels.layers import get_channel_layer
from django.conf import settings

from . import errors, frames, liveness, llm, queueing, renderpool, services
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
        "followers", "task", "stop_requested", "started", "first_token_at", "done", "notice", "last_frame",
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
        # The notice followers are shown now ("Claude is busy, retrying in 8 s"), for late
        # followers too; gone with the next text.
        self.notice: str | None = None
        # (offset, end, frame) of the last flush: remote followers in step share its frame.
        self.last_frame: tuple[int, int, str] = (0, 0, "")

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

    Its frames go out from a task of its own (`Hub._pump`), never from the flush: a Redis that
    hangs or restarts must not hold up the replies' other followers. One send is in flight at a
    time; each sends everything from what it has (`sent`) so far, so a send that failed or was
    dropped (channels-redis is at-most-once) is made good by the next one. The relayed message
    says which part of the text it carries (`offset`, `upto`) and, with the final frame, the
    reply's length, so the receiving socket can tell a gap and fill it (consumers).
    """

    __slots__ = ("channel", "sent", "layer", "pump", "notice", "final")

    def __init__(self, channel: str, sent: int, layer: Any) -> None:
        self.channel = channel
        self.sent = sent
        self.layer = layer
        self.pump: asyncio.Task | None = None
        self.notice: str | None = None
        self.final: str | None = None

    def __hash__(self) -> int:
        return hash(self.channel)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemoteFollower) and other.channel == self.channel

    async def deliver(self, frame: str, *, final: bool, generation_id: str) -> None:
        raise NotImplementedError("frames reach a remote follower through Hub._pump")


# Seconds between two looks of the hub at Redis (liveness, outages, restarts).
WATCH_SECONDS = 1.0
# How long the end of a reply keeps trying to reach a socket on another process (Redis down):
# after that the socket learns the end when its process is back in touch (consumers).
FINAL_RELAY_SECONDS = 10.0


class Hub:
    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}
        self._dirty: set[Run] = set()
        self._ticker: asyncio.Task | None = None
        self._listener: asyncio.Task | None = None
        self.channel_name: str = ""
        self.layer = None
        # Group commit for the two bursts: sends, and replies ending (see batching).
        self.sends = Batcher(lambda requests: services.message_send_many(requests), run=request_db, concurrency=lambda: settings.CHATSITE_DB_THREADS,
                             whole=errors.is_database_outage)
        self.endings = Batcher(lambda endings: _persist_final_many(endings), run=background_db, whole=errors.is_database_outage)
        # Titles and compaction steps of finished replies, queued after their end frames.
        self.followups = Batcher(queueing.publish_many, run=publishing)
        self._background: set[asyncio.Task] = set()
        self.sockets = Registry()  # this process's sockets per person (fanout)
        self.stats = {"started": 0, "finished": 0, "checkpoints": 0, "checkpoint_statements": 0, "frames": 0}
        # What the watcher last saw of Redis (the channel layer's): reachable or not.
        self.redis_ok = True
        self._watcher: asyncio.Task | None = None

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
            if hasattr(self.layer, "connection") and (self._watcher is None or self._watcher.done()):
                self._watcher = asyncio.get_running_loop().create_task(self._watch_redis())
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
        tasks = [r.task for r in self.runs.values() if r.task] + [t for t in (self._ticker, self._listener, self._watcher) if t]
        for task in tasks:
            task.cancel()
        if tasks:
            # A channel-layer receive can take a while to unwind after cancel; don't hang on it.
            await asyncio.wait(tasks, timeout=2)
        if self._background:
            await asyncio.wait(set(self._background), timeout=5)
        if self._watcher is not None:
            connection = liveness.client()
            try:  # gone at once, rather than when the key expires
                await asyncio.wait_for(liveness.gone(connection, self.channel_name), 1)
            except Exception:  # noqa: BLE001 - it expires by itself
                pass
            finally:
                await connection.aclose()

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
        run.last_frame = (offset, run.length, frame)
        run.notice = None
        self.stats["frames"] += 1
        for follower in tuple(run.followers):
            if isinstance(follower, RemoteFollower):
                self._kick(run, follower)
            else:
                await self._deliver(run, follower, frame, final=False)

    async def _deliver(self, run: Run, follower: Follower, frame: str, *, final: bool) -> None:
        """To a follower in this process (a socket, an API stream): never blocks on I/O."""
        try:
            await follower.deliver(frame, final=final, generation_id=run.gid)
        except Exception:  # a socket that went away must not break the generation
            log.debug("Dropping follower of %s", run.gid, exc_info=True)
            run.followers.discard(follower)

    async def notify(self, run: Run, notice: dict[str, Any]) -> None:
        """Show every follower a notice about the reply (frames.notice), late followers too."""
        frame = frames.dumps(notice)
        run.notice = frame
        for follower in tuple(run.followers):
            if isinstance(follower, RemoteFollower):
                follower.notice = frame
                self._kick(run, follower)
            else:
                await self._deliver(run, follower, frame, final=False)

    # --- followers on other processes --------------------------------------------------

    def _kick(self, run: Run, follower: RemoteFollower) -> None:
        if not self.redis_ok and follower.final is None:
            return  # the watcher kicks every remote follower when Redis is back
        if follower.pump is None or follower.pump.done():
            follower.pump = asyncio.get_running_loop().create_task(self._pump(run, follower))

    async def _pump(self, run: Run, follower: RemoteFollower) -> None:
        """Bring one remote follower up to date: the text it lacks, a notice, the end."""
        loop = asyncio.get_running_loop()
        delay, deadline = 0.2, 0.0
        while (message := _next_relay(run, follower)) is not None:
            if await self._relay(run, follower, message):
                if "upto" in message:
                    follower.sent = message["upto"]
                elif message["final"]:
                    follower.final = None
                elif follower.notice is message["frame"]:
                    follower.notice = None
                delay = 0.2
                continue
            if follower.final is None or follower not in run.followers:
                return  # the next flush (or the end) tries again
            # The reply has ended: nothing else will try again, so keep trying for a while.
            deadline = deadline or loop.time() + FINAL_RELAY_SECONDS
            if loop.time() + delay > deadline:
                log.warning("Could not relay the end of %s to %s; it gets it when back in touch", run.gid, follower.channel)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _relay(self, run: Run, follower: RemoteFollower, message: dict[str, Any]) -> bool:
        try:
            await asyncio.wait_for(follower.layer.send(follower.channel, message), settings.CHATSITE_RELAY_SEND_TIMEOUT_SECONDS)
            return True
        except ChannelFull:
            log.warning("Follower channel %s is full; it will catch up on the next frame", follower.channel)
        except (TimeoutError, RedisError, OSError) as exc:
            log.log(logging.WARNING if self.redis_ok else logging.DEBUG,
                    "Could not relay %s to %s (%s); trying again later", run.gid, follower.channel, type(exc).__name__)
        except Exception:
            log.debug("Dropping follower %s of %s", follower.channel, run.gid, exc_info=True)
            run.followers.discard(follower)
        return False

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
        if isinstance(follower, RemoteFollower):
            follower.sent = offset
            follower.notice = run.notice
            run.followers.add(follower)
            self._kick(run, follower)
            return True
        if offset < run.flushed_length:
            catch_up = run.text()[offset:run.flushed_length]
            await self._deliver(run, follower, frames.delta(run.gid, offset, catch_up), final=False)
        if run.notice is not None:
            await self._deliver(run, follower, run.notice, final=False)
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
        """Flush the tail, send the one final frame to every follower, and forget the run.

        Returns once followers on other processes have the end too (or it could not reach them
        for FINAL_RELAY_SECONDS), so that it reaches them before the announcement of the end
        to the person's sockets (runner), which travels the same channels after it.
        """
        await self.flush(run)
        run.done = True
        frame = frames.dumps(end_frame)
        pumps = []
        for follower in tuple(run.followers):
            if isinstance(follower, RemoteFollower):
                follower.final = frame
                self._kick(run, follower)
                pumps.append(follower.pump)
            else:
                await self._deliver(run, follower, frame, final=True)
        self.runs.pop(run.gid, None)
        self._dirty.discard(run)
        self.stats["finished"] += 1
        if pumps:
            await asyncio.wait(pumps)
        run.followers.clear()

    # --- Redis: say we are alive, notice outages and restarts -----------------------------

    async def _watch_redis(self) -> None:
        """Every WATCH_SECONDS: renew this runner's liveness key (liveness) and see whether Redis
        answers. When it answers again after failing, or has lost our key (restarted: the
        channel groups are gone too), every socket of this process is told (`layer.recovered`)
        so it can rejoin its groups and repair what it missed meanwhile."""
        # A client of its own: a watch cut short (a timeout, a cancel) never touches the
        # connections the channel layer receives on.
        connection = liveness.client()
        try:
            await self._watch(connection)
        finally:
            await connection.aclose()

    async def _watch(self, connection: Any) -> None:
        beaten = False
        while True:
            try:
                previous = await asyncio.wait_for(liveness.beat(connection, self.channel_name), settings.CHATSITE_RELAY_SEND_TIMEOUT_SECONDS)
                ok = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis down, hung or restarting
                if self.redis_ok:
                    log.warning("Redis is not answering (%s); live replies go on for the sockets of this process", type(exc).__name__)
                ok, previous = False, b"1"
            lost = ok and beaten and previous is None
            if ok and (not self.redis_ok or lost):
                log.warning("Redis is back%s; telling this process's sockets", " (restarted: its state is gone)" if lost else "")
                self.redis_ok = True
                await self._recovered()
            self.redis_ok = ok
            beaten = beaten or ok
            await asyncio.sleep(WATCH_SECONDS)

    async def _recovered(self) -> None:
        for run in tuple(self.runs.values()):
            for follower in tuple(run.followers):
                if isinstance(follower, RemoteFollower):
                    self._kick(run, follower)
        for socket in self.sockets.all():
            try:
                await socket.dispatch({"type": "layer.recovered"})
            except Exception:  # noqa: BLE001 - one socket must not cost the others
                log.warning("Socket %s could not recover", getattr(socket, "channel_name", "?"), exc_info=True)

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


def _next_relay(run: Run, follower: RemoteFollower) -> dict[str, Any] | None:
    """What a remote follower should get next, as a channel-layer message (or None)."""
    gid = run.gid
    if follower.sent < run.flushed_length:
        start, end = follower.sent, run.flushed_length
        offset, upto, frame = run.last_frame
        if (offset, upto) != (start, end):  # behind (or new): everything from what it has
            frame = frames.delta(gid, start, run.text()[start:end])
        return {"type": "relay.frame", "frame": frame, "final": False, "generation_id": gid, "offset": start, "upto": end}
    if follower.notice is not None:
        return {"type": "relay.frame", "frame": follower.notice, "final": False, "generation_id": gid}
    if follower.final is not None:
        return {"type": "relay.frame", "frame": follower.final, "final": True, "generation_id": gid, "length": run.length}
    return None


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

