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
