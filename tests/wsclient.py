"""A small real client of a running Chatsite (HTTP login + websocket), for multi-process tests."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import aiohttp

_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class ChatClient:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def close(self) -> None:
        await self.session.close()

    async def _csrf(self, path: str) -> str:
        async with self.session.get(self.base_url + path) as resp:
            match = _CSRF.search(await resp.text())
            assert match, f"no CSRF token on {path} ({resp.status})"
            return match.group(1)

    async def signup(self, username: str, password: str = "a-Long-pass-123") -> None:
        token = await self._csrf("/accounts/signup/")
        data = {"csrfmiddlewaretoken": token, "username": username, "email": "", "password1": password, "password2": password}
        async with self.session.post(self.base_url + "/accounts/signup/", data=data, allow_redirects=False) as resp:
            assert resp.status == 302, f"signup failed: {resp.status}"

    async def login(self, username: str, password: str = "a-Long-pass-123") -> int:
        """Log in; the HTTP status of the log-in POST (302 when it worked)."""
        token = await self._csrf("/accounts/login/")
        data = {"csrfmiddlewaretoken": token, "username": username, "password": password}
        async with self.session.post(self.base_url + "/accounts/login/", data=data, allow_redirects=False) as resp:
            return resp.status

    async def new_conversation(self) -> int:
        token = await self._csrf("/chat/")
        async with self.session.post(self.base_url + "/chat/new/", data={"csrfmiddlewaretoken": token}, allow_redirects=False) as resp:
            assert resp.status == 302, f"new conversation failed: {resp.status}"
            return int(resp.headers["Location"].rstrip("/").rsplit("/", 1)[1])

    async def socket(self, conversation_id: int, base_url: str | None = None) -> "Socket":
        base = (base_url or self.base_url).rstrip("/")
        ws = await self.session.ws_connect(base.replace("http", "ws", 1) + f"/ws/conversations/{conversation_id}/", origin=base)
        sock = Socket(ws)
        hello = await sock.receive()
        assert hello["type"] == "hello"
        return sock


class Socket:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.texts: dict[str, str] = {}

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(frame))

    async def receive(self, timeout: float = 20) -> dict[str, Any]:
        message = await self.ws.receive(timeout=timeout)
        if message.type != aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"socket closed: {message.type} {message.data}")
        frame = json.loads(message.data)
        self.frames.append(frame)
        if frame["type"] == "delta":
            have = self.texts.get(frame["generation_id"], "")
            assert frame["offset"] <= len(have), "gap"
            if frame["offset"] + len(frame["text"]) > len(have):
                self.texts[frame["generation_id"]] = have[: frame["offset"]] + frame["text"]
        return frame

    async def receive_type(self, kind: str, timeout: float = 20) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self.receive(timeout=max(0.01, deadline - loop.time()))
            if frame["type"] == kind:
                return frame

    async def until_end(self, generation_id: str, timeout: float = 30) -> dict[str, Any]:
        for frame in self.frames:
            if frame["type"] == "generation.end" and frame["generation_id"] == generation_id:
                return frame
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self.receive(timeout=max(0.01, deadline - loop.time()))
            if frame["type"] == "generation.end" and frame["generation_id"] == generation_id:
                return frame

    async def close(self) -> None:
        await self.ws.close()


class ProtocolSocket:
    """A client that applies frames exactly as docs/protocol.md says, in the background.

    Per generation: `texts` (by offset: a gap is dropped and repaired with `follow` from what it
    has, a duplicate dropped), `ends` (every generation.end, to count them), `short_ends` (ends
    that came while the text was shorter than their content_length: what the protocol forbids),
    `notices`. `errors` and `closed` (the close code, if the server closed it) too. Only
    frames of its own conversation count for `short_ends`.
    """

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, conversation_id: int) -> None:
        self.ws = ws
        self.conversation_id = conversation_id
        self.texts: dict[str, str] = {}
        self.ends: dict[str, list[dict[str, Any]]] = {}
        self.short_ends: list[tuple[str, int, int]] = []
        self.notices: dict[str, list[dict[str, Any]]] = {}
        self.frames: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.hellos = 0
        self.closed: int | None = None
        self.reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, client: ChatClient, conversation_id: int, base_url: str) -> "ProtocolSocket":
        base = base_url.rstrip("/")
        ws = await client.session.ws_connect(base.replace("http", "ws", 1) + f"/ws/conversations/{conversation_id}/", origin=base)
        return cls(ws, conversation_id)

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(frame))

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            frame = json.loads(message.data)
            self.frames.append(frame)
            kind, gid = frame["type"], frame.get("generation_id", "")
            if kind == "hello":
                self.hellos += 1
            elif kind == "delta":
                have = self.texts.get(gid, "")
                if frame["offset"] > len(have):
                    await self.send({"type": "follow", "generation_id": gid, "offset": len(have)})
                elif frame["offset"] + len(frame["text"]) > len(have):
                    self.texts[gid] = have[: frame["offset"]] + frame["text"]
            elif kind == "generation.end":
                have = len(self.texts.get(gid, ""))
                # (Ends of replies in the person's other conversations announce them, no text.)
                if frame["conversation_id"] == self.conversation_id and have < frame["content_length"]:
                    self.short_ends.append((gid, have, frame["content_length"]))
                self.ends.setdefault(gid, []).append(frame)
            elif kind == "notice":
                self.notices.setdefault(gid, []).append(frame)
            elif kind == "error":
                self.errors.append(frame)
        self.closed = self.ws.close_code

    async def wait(self, predicate, timeout: float = 30, what: str = "condition") -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            if self.reader.done():
                raise AssertionError(f"socket closed ({self.closed}) while waiting for {what}")
            await asyncio.sleep(0.02)

    async def first(self, kind: str, since: int = 0, timeout: float = 20, **fields: Any) -> dict[str, Any]:
        """The first frame of `kind` (with these `fields`) from frame number `since` on (take
        len(frames) before sending)."""
        def match(f: dict[str, Any]) -> bool:
            return f["type"] == kind and all(f.get(k) == v for k, v in fields.items())

        await self.wait(lambda: any(match(f) for f in self.frames[since:]), timeout, kind)
        return next(f for f in self.frames[since:] if match(f))

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()
