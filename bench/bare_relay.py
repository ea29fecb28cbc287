"""The bare relay: the floor for a websocket relay server (run by daphne, one process).

A Channels AsyncWebsocketConsumer under a plain URLRouter: no auth, no database, no channel
layer. On {"type": "go", "content": ...} it reads the fake with the lean SSE read and sends
every text delta as its own websocket frame (same JSON shape as Chatsite's delta frames),
then one `generation.end`.

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


def client():
    global _client
    if _client is None:
        _client = lean.make_client(os.environ["ANTHROPIC_BASE_URL"], os.environ.get("ANTHROPIC_API_KEY", "bench"))
    return _client


class BareRelay(AsyncWebsocketConsumer):
    channel_layer_alias = "bench-no-channel-layer"  # not configured: get_channel_layer() -> None

    async def connect(self) -> None:
        self.tasks: set[asyncio.Task] = set()
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
        offset, status = 0, "complete"
        send = self.send
        try:
            async for text in lean.text_deltas(client(), content):
                await send(text_data=_dumps({"type": "delta", "generation_id": "bare", "offset": offset, "text": text}))
                offset += len(text)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported to the client as the end status
            status = f"error: {type(exc).__name__}"
        await send(text_data=_dumps({"type": "generation.end", "generation_id": "bare", "message": {"status": status}, "content_length": offset}))


application = URLRouter([path("ws/bare/", BareRelay.as_asgi())])
