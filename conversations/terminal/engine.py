"""The terminal's hub: an asyncio loop in a helper thread, the runner on it, a printing follower.

The hub lives on its own loop so it keeps listening on its channel while the main thread waits
for the person's next line: a browser tab of the same person follows a terminal reply live and
its Stop button works. The main thread only submits work here and waits for it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Coroutine
from typing import Any, TextIO

from django.conf import settings

from .. import groups, llm, runner, services
from ..hub import Hub, get_hub

log = logging.getLogger(__name__)


class ReplyPrinter:
    """A hub follower: writes each new piece of a reply once, in order, and keeps the end frame.

    Offsets count code points of the reply text, so a frame that repeats text already printed
    (a catch-up) adds only what is new. Never raises: the hub drops a follower that does.
    """

    def __init__(self, out: TextIO | None) -> None:
        self.out = out  # None: collect only (--json)
        self.parts: list[str] = []
        self.received = 0
        self.end: dict[str, Any] | None = None
        self._done: asyncio.Event | None = None

    def bind(self) -> None:
        self._done = asyncio.Event()  # on the engine's loop

    async def wait(self) -> dict[str, Any]:
        assert self._done is not None
        await self._done.wait()
        assert self.end is not None
        return self.end

    @property
    def text(self) -> str:
        return "".join(self.parts)

    async def deliver(self, frame: str, *, final: bool, generation_id: str) -> None:
        data: dict[str, Any] = {}
        try:
            data = json.loads(frame)
            if data.get("type") == "delta":
                self._take(int(data["offset"]), str(data["text"]))
            elif data.get("type") == "notice" and self.out is not None:
                # "Claude is busy; retrying in 8 s…" and the like: beside the reply, not in it.
                print(f"[{data.get('message', '')}]", file=sys.stderr, flush=True)
        except Exception:
            log.exception("Could not print a frame of %s", generation_id)
        if final:
            self.end = data
            if self._done is not None:
                self._done.set()

    def _take(self, offset: int, text: str) -> None:
        if offset > self.received:
            log.warning("Missing text %d..%d of the reply", self.received, offset)  # never in-process
        new = text[max(0, self.received - offset):]
        if not new:
            return
        self.parts.append(new)
        self.received = max(self.received, offset) + len(new)
        if self.out is not None:
            try:
                self.out.write(new)
                self.out.flush()
            except OSError:  # e.g. `| head`: keep the reply going, stop printing
                self.out = None


class Engine:
    """An asyncio loop in a daemon thread with the process's hub (and runner tasks) on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, name="chatsite-terminal-loop", daemon=True)
        self.hub: Hub | None = None
        self.channel = ""
        self.offline_server: Any = None  # the in-process fake when offline without a server

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def start(self) -> None:
        self.thread.start()
        self.submit(self._setup()).result(timeout=30)

    async def _setup(self) -> None:
        if settings.CHATSITE_OFFLINE_DEMO and not settings.ANTHROPIC_BASE_URL and not settings.ANTHROPIC_API_KEY:
            await self._start_offline_server()
        self.hub = get_hub()
        try:
            self.channel = await asyncio.wait_for(self.hub.ensure_listening(), 10)
        except Exception:
            # The reply still works; only browser tabs cannot follow or stop it.
            log.warning("No channel layer: the web UI cannot follow this terminal's replies", exc_info=True)

    async def _start_offline_server(self) -> None:
        """`make run` starts the fake for the web UI; here it runs on our own loop."""
        from aiohttp import web

        from fakeanthropic.server import build_app

        tps = float(os.environ.get("FAKE_ANTHROPIC_TPS") or 40)  # as `python -m fakeanthropic` reads it
        server = web.AppRunner(build_app(default_tps=tps), access_log=None, handle_signals=False, shutdown_timeout=0.25)
        await server.setup()
        await web.TCPSite(server, "127.0.0.1", 0).start()
        self.offline_server = server
        settings.ANTHROPIC_BASE_URL = f"http://127.0.0.1:{server.addresses[0][1]}"
        llm.reset_clients()

    def reply(self, spec: services.GenerationSpec, printer: ReplyPrinter, created: dict[str, Any]) -> concurrent.futures.Future:
        return self.submit(self._reply(spec, printer, created))

    async def _reply(self, spec: services.GenerationSpec, printer: ReplyPrinter, created: dict[str, Any]) -> dict[str, Any]:
        assert self.hub is not None
        printer.bind()
        run = runner.start(self.hub, spec)
        await self.hub.follow(run.gid, printer, 0)  # before the run's task first gets the loop
        try:
            # The person's open tabs show the message and follow the reply, as for an API send.
            await asyncio.wait_for(
                _channel_layer().group_send(groups.user_group(spec.owner_id), {"type": "chat.message_created", "payload": created, "origin": ""}), 5
            )
        except Exception:
            log.warning("Could not announce the message to the web UI", exc_info=True)
        return await printer.wait()

    def stop(self, generation_id: str) -> None:
        if self.hub is not None:
            self.loop.call_soon_threadsafe(self.hub.stop, generation_id)

    def close(self) -> None:
        if not self.thread.is_alive():
            return
        try:
            self.submit(self._teardown()).result(timeout=10)
        except Exception:
            log.warning("The terminal's loop did not shut down cleanly", exc_info=True)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)

    async def _teardown(self) -> None:
        if self.hub is not None:
            # A reply still running (only on an abnormal exit) is recorded as interrupted.
            await self.hub.close()
        if self.offline_server is not None:
            await self.offline_server.cleanup()


def _channel_layer():
    from channels.layers import get_channel_layer

    return get_channel_layer()


class CtrlC:
    """SIGINT stops the reply being written; anywhere else it interrupts (KeyboardInterrupt)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.replying = False
        self.generation_id = ""
        self.pressed = False

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if not self.replying:
            raise KeyboardInterrupt
        if not self.pressed:
            self.pressed = True
            if self.generation_id:
                self.engine.stop(self.generation_id)
            # else: the reply is being stored; it is stopped as soon as it starts (see Session).

    def begin(self) -> None:
        self.replying, self.generation_id, self.pressed = True, "", False

    def started(self, generation_id: str) -> None:
        self.generation_id = generation_id
        if self.pressed:
            self.engine.stop(generation_id)

    def end(self) -> None:
        self.replying, self.generation_id = False, ""



def wait(future: concurrent.futures.Future) -> Any:
    """The future's result; short timeouts keep the main thread responsive to Ctrl+C meanwhile."""
    while True:
        try:
            return future.result(timeout=0.2)
        except concurrent.futures.TimeoutError:
            continue
