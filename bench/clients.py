"""N websocket clients (aiohttp), one stream each: all connect first, then each sends at its
offset (bench/arrivals.py: all at once, or at a steady rate).

Chatsite: connect with the session cookie and Origin, wait for `hello`, send
{"type":"send","content":"bench <i>","client_id":"<i>"}, apply `delta` frames by offset as the
protocol says (a gap -> `follow` from what we have), end on our `generation.end`.
Bare relay: the same, with {"type":"go","content":"bench <i>"}.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import aiohttp

from .record import Stream

CONNECT_CONCURRENCY = 64


@dataclass
class Target:
    url: str  # ws://...
    headers: dict[str, str]


async def run(targets: list[Target], *, chatsite: bool, timeout: float, on_start=None, on_done=None,
              offsets: list[float] | None = None) -> tuple[list[Stream], float]:
    """Returns the streams and the seconds it took to connect them all.

    `on_start()` runs once every socket is connected, right before the sends; `on_done()` once
    every stream ended (or failed), before the sockets are closed. Stream i sends `offsets[i]`
    seconds after every socket is connected (all at once without offsets).
    """
    n = len(targets)
    streams = [Stream(idx=i) for i in range(n)]
    sem = asyncio.Semaphore(CONNECT_CONCURRENCY)
    settled = 0
    all_ready = asyncio.Event()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    connect_secs = 0.0
    ready_at = 0.0

    def settle() -> None:
        nonlocal settled, connect_secs, ready_at
        settled += 1
        if settled == n:
            ready_at = loop.time()
            connect_secs = ready_at - t0
            if on_start is not None:
                on_start()
            all_ready.set()

    sockets: list[aiohttp.ClientWebSocketResponse] = []

    async def one(i: int, session: aiohttp.ClientSession) -> None:
        s = streams[i]
        ws = None
        try:
            try:
                async with sem:
                    ws = await session.ws_connect(targets[i].url, headers=targets[i].headers, heartbeat=None, max_msg_size=0, timeout=aiohttp.ClientWSTimeout(ws_close=10))
                    sockets.append(ws)
                    hello = await ws.receive(timeout=60)
                if hello.type != aiohttp.WSMsgType.TEXT or json.loads(hello.data).get("type") != "hello":
                    raise RuntimeError(f"no hello: {hello.type} {hello.data!r}"[:200])
            finally:
                settle()
            await all_ready.wait()
            if offsets and offsets[i] > 0:
                await asyncio.sleep(max(0.0, ready_at + offsets[i] - loop.time()))
            payload = {"type": "send", "content": f"bench {i}", "client_id": str(i)} if chatsite else {"type": "go", "content": f"bench {i}"}
            s.sent_at = time.time()
            await ws.send_str(json.dumps(payload))
            await asyncio.wait_for(_receive(ws, s, str(i), chatsite), timeout)
        except asyncio.TimeoutError:
            s.status = s.status or "timeout"
        except Exception as exc:  # noqa: BLE001 - recorded as the stream's failure
            s.status = s.status or f"{type(exc).__name__}: {exc}"[:200]

    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        try:
            await asyncio.gather(*(one(i, session) for i in range(n)))
            if on_done is not None:
                on_done()
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return streams, connect_secs


async def _receive(ws: aiohttp.ClientWebSocketResponse, s: Stream, client_id: str, chatsite: bool) -> None:
    gid = None if chatsite else "bare"
    loads = json.loads
    clock = time.time
    while True:
        msg = await ws.receive()
        now = clock()
        if msg.type != aiohttp.WSMsgType.TEXT:
            s.status = f"socket closed ({msg.type.name} {msg.data!r})"[:200]
            return
        f = loads(msg.data)
        kind = f.get("type")
        if kind == "delta":
            if gid is None or f.get("generation_id") != gid:
                continue
            s.frames += 1
            offset, text = f["offset"], f["text"]
            if offset > s.length:  # a gap: ask for the rest, drop this frame
                s.gaps += 1
                await ws.send_str(json.dumps({"type": "follow", "generation_id": gid, "offset": s.length}))
                continue
            if offset + len(text) <= s.length:
                continue  # duplicate
            new = text[s.length - offset:]
            s.length += len(new)
            if s.first_at is None:
                s.first_at = now
            s.take_text(new, now)
        elif kind == "message.created":
            if f.get("client_id") == client_id and gid is None:
                gid = f["reply"]["generation_id"]
        elif kind == "generation.end":
            if gid is not None and f.get("generation_id") == gid:
                s.end_at = now
                s.status = f["message"]["status"]
                s.content_length = f.get("content_length")
                return
        elif kind == "error":
            s.status = f"error frame: {f.get('code')}"
            return


async def touch(target: Target) -> None:
    """Open one socket, wait for its hello, close it (starts a server's per-process machinery)."""
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(target.url, headers=target.headers, heartbeat=None, timeout=aiohttp.ClientWSTimeout(ws_close=10)) as ws:
            hello = await ws.receive(timeout=60)
            if hello.type != aiohttp.WSMsgType.TEXT or json.loads(hello.data).get("type") != "hello":
                raise RuntimeError(f"no hello: {hello.type} {hello.data!r}"[:200])


async def fetch_json(url: str, cookie: str | None = None) -> dict:
    headers = {"Cookie": f"sessionid={cookie}"} if cookie else {}
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=30)) as resp:
            resp.raise_for_status()
            return await resp.json()
