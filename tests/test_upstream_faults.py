"""Upstream faults with a bounded wait: the retry budget holds whatever `retry-after` says, the
person is told while the server waits, and a stream that stalls is ended with its text kept."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.conftest import Socket, stored_message

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]


def _frames(sock: Socket, gid: str, kind: str) -> list[dict]:
    return [f for f in sock.frames if f["type"] == kind and f.get("generation_id") == gid]


async def test_a_retry_after_longer_than_the_budget_fails_the_reply_without_waiting_it_out(llm, token, alice, conversation, settings):
    settings.CHATSITE_RETRY_BUDGET_SECONDS = 3.0
    llm.script([{"status": 429, "retry_after_ms": 12_000, "repeat": 5}], match=token)
    sock = Socket(alice, conversation.pk)
    await sock.connect()
    started = time.monotonic()
    created = await sock.send_message(f"busy {token}")
    _, end = await sock.follow_to_end(created["reply"]["generation_id"], timeout=60)
    waited = time.monotonic() - started
    assert end["message"]["status"] == "error" and end["message"]["error_code"] == "rate_limited"
    assert "asked to wait 12 s" in end["message"]["error"]
    # One request: neither the SDK nor the runner sat out the 12 s (the SDK's own retries would
    # have made three requests, 12 s apart).
    assert sum(token in str(r["body"]) for r in llm.requests()) == 1
    assert waited < 12, f"waited {waited:.1f} s"
    await sock.close()


async def test_the_person_sees_claude_is_busy_while_the_server_waits_to_retry(llm, token, alice, conversation):
    llm.script([{"status": 529, "retry_after_ms": 1000}, {"text": "fine now"}], match=token)
    sock = Socket(alice, conversation.pk)
    await sock.connect()
    created = await sock.send_message(f"busy {token}")
    gid = created["reply"]["generation_id"]
    text, end = await sock.follow_to_end(gid)
    assert (text, end["message"]["status"]) == ("fine now", "complete")
    notices = _frames(sock, gid, "notice")
    assert [(n["code"], n["seconds"]) for n in notices] == [("retrying", 1.0)]
    assert "busy" in notices[0]["message"] and "1 s" in notices[0]["message"]
    # Shown before any text: the notice comes first.
    kinds = [f["type"] for f in sock.frames if f.get("generation_id") == gid]
    assert kinds.index("notice") < kinds.index("delta")
    await sock.close()


async def test_a_stream_that_stalls_shows_a_notice_then_ends_as_timeout_with_its_text(llm, token, alice, conversation, settings):
    settings.CHATSITE_STALL_NOTICE_SECONDS = 1.0
    settings.CHATSITE_STALL_TIMEOUT_SECONDS = 3.0
    llm.script([{"text": "one two three four five", "tps": 50, "stall_after": 3, "stall_ms": 30_000}], match=token)
    sock = Socket(alice, conversation.pk)
    await sock.connect()
    created = await sock.send_message(f"stall {token}")
    gid = created["reply"]["generation_id"]
    text, end = await sock.follow_to_end(gid, timeout=30)
    assert text == "one two three "
    assert end["message"]["status"] == "error" and end["message"]["error_code"] == "timeout"
    assert "stopped sending" in end["message"]["error"] and "kept" in end["message"]["error"]
    assert [n["code"] for n in _frames(sock, gid, "notice")] == ["stalled"]
    stored = await stored_message(created["reply"]["id"])
    assert (stored.status, stored.error_code, stored.content) == ("error", "timeout", "one two three ")
    await sock.close()


async def test_a_stall_before_any_text_is_retried_within_the_budget(llm, token, alice, conversation, settings):
    settings.CHATSITE_STALL_NOTICE_SECONDS = 1.0
    settings.CHATSITE_STALL_TIMEOUT_SECONDS = 2.0
    settings.CHATSITE_RETRY_BUDGET_SECONDS = 6.0
    llm.script([{"text": "never", "stall_after": 0, "stall_ms": 30_000}, {"text": "second try"}], match=token)
    sock = Socket(alice, conversation.pk)
    await sock.connect()
    created = await sock.send_message(f"stall {token}")
    text, end = await sock.follow_to_end(created["reply"]["generation_id"], timeout=30)
    assert (text, end["message"]["status"]) == ("second try", "complete")
    await asyncio.sleep(0)
    await sock.close()
