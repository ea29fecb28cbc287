"""The bare relay: the floor for a websocket relay server (run by daphne, one process).

A Channels AsyncWebsocketConsumer under a plain URLRouter: no auth, no database, no channel
layer. On {"type": "go", "content": ...} it reads the fake with the lean SSE read and relays
the text as delta frames (same JSON shape as Chatsite's), then one `generation.end`.

Frames are batched like Chatsite's hub batches them (conversations/hub.py): the text of every
stream is collected, and one ticker for the whole process sends each stream's new text as one
frame every BARE_BATCH_SECONDS (the bench passes Chatsite's CHATSITE_DELTA_BATCH_SECONDS), and
once more right before the end frame. So the two relays send the same frames per reply and
their CPU per delta compares like with like. BARE_BATCH_SECONDS=0 sends one frame per delta.

    DJANGO_SETTINGS_MODULE=bench.bare_settings ANTHROPIC_BASE_URL=... daphne bench.bare_relay:application
"""

from __future__ import annotations

import asyncio
import json
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.bare_settings")

import django  # noqa: E402

django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from bench import lean  # noqa: E402

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_client = None
BATCH_SECONDS = float(os.environ.get("BARE_BATCH_SECONDS", "0.04"))


def client():
    global _client
    if _client is None:
        _client = lean.make_client(os.environ["ANTHROPIC_BASE_URL"], os.environ.get("ANTHROPIC_API_KEY", "bench"))
    return _client


class Relayed:
    """One stream's text: what arrived, and how much of it its socket has been sent."""

    __slots__ = ("send", "parts", "length", "flushed")

    def __init__(self, send) -> None:
        self.send = send
        self.parts: list[str] = []
        self.length = 0
        self.flushed = 0

    async def flush(self) -> None:
        if not self.parts:
            return
        text = "".join(self.parts)
        self.parts.clear()
        offset, self.flushed = self.flushed, self.length
        await self.send(text_data=_dumps({"type": "delta", "generation_id": "bare", "offset": offset, "text": text}))


class Ticker:
    """The process's one flush timer, as Chatsite's hub has one (Hub._tick)."""

    def __init__(self) -> None:
        self.live: set[Relayed] = set()
        self.dirty: set[Relayed] = set()
        self.task: asyncio.Task | None = None

    def add(self, relayed: Relayed) -> None:
        self.live.add(relayed)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        next_flush = loop.time() + BATCH_SECONDS
        while self.live:
            await asyncio.sleep(max(0.0, next_flush - loop.time()))
            next_flush = max(next_flush + BATCH_SECONDS, loop.time())
            for relayed in tuple(self.dirty):
                self.dirty.discard(relayed)
                try:
                    await relayed.flush()
                except Exception:  # noqa: BLE001 - a closed socket must not stop the others
                    self.live.discard(relayed)


_ticker = Ticker()


class BareRelay(AsyncWebsocketConsumer):
    channel_layer_alias = "bench-no-channel-layer"  # not configured: get_channel_layer() -> None

    async def connect(self) -> None:
        self.tasks: set[asyncio.Task] = set()
        client()  # built by the first socket, as Chatsite's hub builds its client when it starts
        await self.accept()
        await self.send(text_data='{"type":"hello"}')

    async def disconnect(self, code: int) -> None:
        for task in self.tasks:
            task.cancel()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        data = json.loads(text_data or "{}")
        if data.get("type") == "go":
            task = asyncio.get_running_loop().create_task(self.relay(str(data.get("content", "go"))))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def relay(self, content: str) -> None:
        status = "complete"
        relayed = Relayed(self.send)
        batched = BATCH_SECONDS > 0
        if batched:
            _ticker.add(relayed)
        parts_append, dirty_add = relayed.parts.append, _ticker.dirty.add
        try:
            async for text in lean.text_deltas(client(), content):
                parts_append(text)
                relayed.length += len(text)
                if batched:
                    dirty_add(relayed)
                else:
                    await relayed.flush()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported to the client as the end status
            status = f"error: {type(exc).__name__}"
        finally:
            _ticker.live.discard(relayed)
            _ticker.dirty.discard(relayed)
        await relayed.flush()
        await self.send(text_data=_dumps({"type": "generation.end", "generation_id": "bare", "message": {"status": status}, "content_length": relayed.length}))


application = URLRouter([path("ws/bare/", BareRelay.as_asgi())])
