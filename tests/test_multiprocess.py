"""Two real daphne processes on one database and one Redis, as in production.

A socket on process B follows and stops a reply that process A runs; a SIGKILLed process
leaves no reply stuck "streaming" once the reaper has run.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

from tests.faultkit import FaultStack
from tests.livestack import LIVENESS_TTL_SECONDS
from tests.wsclient import ChatClient

pytestmark = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs the Redis channel layer (make test provides it)")


@pytest.fixture
def stack(fake_anthropic):
    stack = FaultStack(anthropic_url=fake_anthropic.url).start()
    yield stack
    stack.stop()


def _words(n: int) -> str:
    return " ".join(f"m{i:04d}" for i in range(n))


async def _two_sockets(stack: FaultStack):
    client = ChatClient(stack.url)
    await client.signup(f"u{uuid.uuid4().hex[:10]}")
    conversation_id = await client.new_conversation()
    on_a = await client.socket(conversation_id)  # process A
    on_b = await client.socket(conversation_id, base_url=stack.second_url)  # process B
    return client, on_a, on_b


async def test_socket_on_another_process_follows_and_stops_the_reply(stack, fake_anthropic):
    token = uuid.uuid4().hex
    text = _words(400)
    fake_anthropic.script([{"text": text, "tps": 60}], match=token)
    client, on_a, on_b = await _two_sockets(stack)
    try:
        await on_a.send({"type": "send", "content": f"go {token}", "client_id": "a"})
        created = await on_a.receive_type("message.created")
        gid = created["reply"]["generation_id"]
        assert (await on_b.receive_type("message.created"))["reply"]["generation_id"] == gid
        while len(on_b.texts.get(gid, "")) < 100:  # B gets the text through the channel layer
            await on_b.receive()
        await on_b.send({"type": "stop", "generation_id": gid})
        end_b, end_a = await asyncio.gather(on_b.until_end(gid), on_a.until_end(gid))
        assert end_a["message"]["status"] == end_b["message"]["status"] == "stopped"
        stored = stack.stored_replies()[-1]
        assert stored[1] == "stopped"
        assert on_a.texts[gid] == on_b.texts[gid] == stored[0]
        assert 100 <= len(stored[0]) < len(text) and text.startswith(stored[0])
        assert [f["type"] for f in on_b.frames].count("generation.end") == 1
    finally:
        await client.close()


async def test_reply_completes_identically_on_both_processes(stack, fake_anthropic):
    token = uuid.uuid4().hex
    text = _words(150)
    fake_anthropic.script([{"text": text, "tps": 200}], match=token)
    client, on_a, on_b = await _two_sockets(stack)
    try:
        await on_b.send({"type": "send", "content": f"go {token}", "client_id": "b"})  # runs on B
        gid = (await on_b.receive_type("message.created"))["reply"]["generation_id"]
        end_a, end_b = await asyncio.gather(on_a.until_end(gid), on_b.until_end(gid))
        assert end_a["message"]["status"] == end_b["message"]["status"] == "complete"
        assert on_a.texts[gid] == on_b.texts[gid] == text == stack.stored_replies()[-1][0]
    finally:
        await client.close()


async def test_killed_process_leaves_no_reply_streaming_after_the_reaper(stack, fake_anthropic):
    token = uuid.uuid4().hex
    text = _words(600)
    fake_anthropic.script([{"text": text, "tps": 60}], match=token)
    client, on_a, on_b = await _two_sockets(stack)
    try:
        await on_a.send({"type": "send", "content": f"go {token}", "client_id": "a"})
        gid = (await on_a.receive_type("message.created"))["reply"]["generation_id"]
        while len(on_a.texts.get(gid, "")) < 200:
            await on_a.receive()
        await asyncio.sleep(1.2)  # past a checkpoint (0.5 s in the live stack)
        stack.kill_primary()  # no cleanup at all: SIGKILL
        assert stack.stored_replies()[-1][1] == "streaming"
        await asyncio.sleep(LIVENESS_TTL_SECONDS + 0.5)  # its "alive" key in Redis expires
        assert "Recovered 1" in stack.manage("recover_generations", env={"CHATSITE_HEARTBEAT_STALE_SECONDS": "1.0"})
        content, status = stack.stored_replies()[-1]
        assert status == "interrupted"
        assert len(content) >= 100 and text.startswith(content), "the checkpointed text is kept"
        end = await on_b.until_end(gid)  # the surviving process's socket is told
        assert end["message"]["status"] == "interrupted"
        assert "retry" in end["message"]["error"].lower()
    finally:
        await client.close()


async def test_page_back_from_offline_shows_what_was_sent_meanwhile(stack, fake_anthropic):
    """The page's server process dies; the person goes on from another process; when the page's
    server is back, the page reconnects by itself and shows the messages it missed."""
    from playwright.async_api import async_playwright, expect

    from tests.browser import CHROMIUM, CHROMIUM_ARGS

    token = uuid.uuid4().hex
    fake_anthropic.script([{"text": "first answer"}], match=f"one {token}")
    fake_anthropic.script([{"text": "second answer, sent while the page was offline"}], match=f"two {token}")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = await browser.new_context(base_url=stack.url)
        csp_violations: list[str] = []  # (conftest's check covers the `browser` fixture; this test has its own)
        context.on("console", lambda m: csp_violations.append(m.text) if "Content Security Policy" in m.text else None)
        page = await context.new_page()
        client = ChatClient(stack.second_url)
        try:
            password = "Vx7-" + uuid.uuid4().hex
            await page.goto("/accounts/signup/")
            await page.fill("#id_username", f"u{token[:10]}")
            await page.fill("#id_password1", password)
            await page.fill("#id_password2", password)
            await page.get_by_role("button", name="Create account").click()
            await page.locator("#composer-input").fill(f"one {token}")
            await page.locator("#composer-input").press("Enter")
            await expect(page.locator("#thread .msg-assistant.status-complete")).to_have_count(1)
            conversation_id = int(page.url.rstrip("/").rsplit("/", 1)[1])

            stack.kill_primary()
            await expect(page.locator("#conn-status")).to_contain_text("Offline", timeout=10_000)

            # Same person (same session cookie), through the other process.
            for cookie in await context.cookies():
                client.session.cookie_jar.update_cookies({cookie["name"]: cookie["value"]})
            sock = await client.socket(conversation_id)
            await sock.send({"type": "send", "content": f"two {token}", "client_id": "b"})
            gid = (await sock.receive_type("message.created"))["reply"]["generation_id"]
            assert (await sock.until_end(gid))["message"]["status"] == "complete"

            stack.restart_primary()  # the page's server comes back
            await expect(page.locator("#conn-status")).to_have_text("", timeout=20_000)
            await expect(page.locator("#thread .msg-user")).to_have_count(2)
            await expect(page.locator("#thread .msg-assistant").last).to_contain_text("sent while the page was offline")
            assert not csp_violations, csp_violations
        finally:
            await client.close()
            await browser.close()
