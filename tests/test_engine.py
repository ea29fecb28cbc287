"""The streaming engine: resume, continue, faults, disconnect storms, bounded persistence."""

from __future__ import annotations

import asyncio
import random

import pytest
from asgiref.sync import sync_to_async
from django.db import DatabaseError, OperationalError

from conversations import hub as hub_module
from conversations import prompting, services
from conversations.models import Message
from tests.conftest import Socket, stored_message

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]




def _words(n: int, prefix: str = "w") -> str:
    return " ".join(f"{prefix}{i:04d}" for i in range(n)) + "."


async def test_a_new_socket_resumes_from_its_offset_without_gap_or_duplicate(llm, token, alice, conversation):
    text = _words(200)
    llm.script([{"text": text, "tps": 150}], match=token)
    first = Socket(alice, conversation.pk)
    await first.connect()
    created = await first.send_message(f"go {token}")
    gid = created["reply"]["generation_id"]
    have = ""
    while len(have) < 200:  # read some text, then "reload"
        frame = await first.receive()
        if frame["type"] == "delta":
            assert frame["offset"] == len(have)
            have += frame["text"]
    await first.close()

    second = Socket(alice, conversation.pk)
    await second.connect()
    await second.send({"type": "follow", "generation_id": gid, "offset": len(have)})
    streamed, end = await second.follow_to_end(gid, have=have)
    assert streamed == text
    stored = await stored_message(created["reply"]["id"])
    assert stored.content == text and end["message"]["status"] == "complete"
    await second.close()


async def test_following_a_finished_generation_gets_its_end_frame_once(llm, token, alice, conversation):
    llm.script([{"text": "short answer"}], match=token)
    sock = Socket(alice, conversation.pk)
    await sock.connect()
    created = await sock.send_message(f"go {token}")
    gid = created["reply"]["generation_id"]
    await sock.follow_to_end(gid)
    late = Socket(alice, conversation.pk)
    await late.connect()
    await late.send({"type": "follow", "generation_id": gid, "offset": 0})
    await late.send({"type": "follow", "generation_id": gid, "offset": 0})
    end = await late.receive_type("generation.end")
    assert end["message"]["status"] == "complete" and "short answer" in end["message"]["html"]
    await late.send({"type": "ping"})
    await late.receive_type("pong")
    assert [f["type"] for f in late.frames].count("generation.end") == 1
    await sock.close()
    await late.close()


async def test_follow_again_resends_from_the_given_offset(llm, token, alice, conversation):
    text = _words(150)
    llm.script([{"text": text, "tps": 100}], match=token)
    sock = Socket(alice, conversation.pk)
    await sock.connect()
    created = await sock.send_message(f"go {token}")
    gid = created["reply"]["generation_id"]
    while not any(f["type"] == "delta" and f["offset"] > 50 for f in sock.frames):
        await sock.receive()
    await sock.send({"type": "follow", "generation_id": gid, "offset": 10})  # as after a detected gap
    repaired = await sock.receive_type("delta")
    while repaired["offset"] != 10:
        repaired = await sock.receive_type("delta")
    assert text.startswith(text[:10] + repaired["text"])
    streamed, _ = await sock.follow_to_end(gid)
    assert streamed == text
    await sock.close()


async def test_continue_after_stop_appends_to_the_kept_text(llm, token, alice, conversation):
    llm.script([{"text": _words(300), "tps": 80}], match=token)
    sock = Socket(alice, conversation.pk)
    await sock.connect()
    created = await sock.send_message(f"go {token}")
    gid = created["reply"]["generation_id"]
    while not any(f["type"] == "delta" for f in sock.frames):
        await sock.receive()
    await sock.send({"type": "stop", "generation_id": gid})
    partial, end = await sock.follow_to_end(gid)
    assert end["message"]["status"] == "stopped"
    stopped = await stored_message(created["reply"]["id"])

    # (A Continue ends with a short request to carry on: the token is in an earlier user turn.)
    llm.script([{"text": " and the rest.", "match_in": "all_user_turns"}], match=token)
    await sock.send({"type": "continue", "message_id": stopped.pk, "client_id": "cont"})
    again = await sock.receive_type("message.created")
    new_gid = again["reply"]["generation_id"]
    assert new_gid != gid and again["reply"]["id"] == stopped.pk and again["reply"]["text"] == partial
    final, end = await sock.follow_to_end(new_gid, have=partial)
    assert final == partial + " and the rest."
    stored = await stored_message(stopped.pk)
    assert stored.content == final and stored.status == Message.Status.COMPLETE
    assert stored.input_tokens > stopped.input_tokens  # both generations are counted
    # Today's models refuse a prefill: the kept text is Claude's turn, then a request to carry on.
    continued = [r["body"]["messages"] for r in llm.requests() if r["body"]["messages"][-1]["content"] == prompting.CONTINUE_INSTRUCTION][-1]
    assert continued[-2] == {"role": "assistant", "content": partial}
    await sock.close()


async def test_regenerate_never_shows_the_old_generations_text(llm, token, alice, conversation):
    llm.script([{"text": "first version"}, {"text": "second version"}], match=token)
    sock = Socket(alice, conversation.pk)
    await sock.connect()
    created = await sock.send_message(f"go {token}")
    first, _ = await sock.follow_to_end(created["reply"]["generation_id"])
    sock.frames.clear()
    await sock.send({"type": "regenerate", "message_id": created["reply"]["id"], "client_id": "r"})
    again = await sock.receive_type("message.created")
    assert again["reply"]["id"] != created["reply"]["id"]
    assert again["reply"]["parent_id"] == created["user_message"]["id"]
    second, _ = await sock.follow_to_end(again["reply"]["generation_id"])
    assert (first, second) == ("first version", "second version")
    await sock.close()


@pytest.mark.parametrize(
    "replies,status,error_code,text",
    [
        ([{"status": 429, "retry_after_ms": 10}, {"text": "ok after 429"}], "complete", "", "ok after 429"),
        ([{"status": 529, "repeat": 3}, {"text": "ok after 529s"}], "complete", "", "ok after 529s"),
        ([{"status": 500, "repeat": 50}], "error", "upstream_error", ""),
        ([{"status": 529, "repeat": 50}], "error", "overloaded", ""),
        ([{"text": "a b c d e f g h", "cut_after": 4}], "error", "stream_cut", "a b c d "),
        ([{"text": "a b c d e f g h", "error_event_after": 2}], "error", "overloaded", "a b "),
        ([{"text": "slow start", "first_byte_delay_ms": 800}], "complete", "", "slow start"),
        ([{"status": 400, "message": "prompt is too long"}], "error", "invalid_request", ""),
    ],
    ids=["429-then-ok", "529x3-then-ok", "500-always", "529-always", "cut-midway", "error-event", "slow-first-byte", "400"],
)
async def test_faults_end_in_the_expected_stored_state(llm, token, alice, conversation, replies, status, error_code, text):
    llm.script(replies, match=token)
    sock = Socket(alice, conversation.pk)
    await sock.connect()
    created = await sock.send_message(f"fault {token}")
    streamed, end = await sock.follow_to_end(created["reply"]["generation_id"], timeout=30)
    stored = await stored_message(created["reply"]["id"])
    assert (stored.status, stored.error_code, stored.content) == (status, error_code, text)
    assert streamed == text and end["message"]["status"] == status
    if status == "error":
        assert stored.error and "Error" not in stored.error and "{" not in stored.error  # human, not an exception
    user_message = await stored_message(created["user_message"]["id"])
    assert user_message.content == f"fault {token}"
    await sock.close()


async def test_slow_first_byte_beyond_the_timeout_fails_with_a_clear_message(llm, token, alice, conversation, settings):
    settings.ANTHROPIC_TIMEOUT = 0.3
    settings.ANTHROPIC_MAX_RETRIES = 0
    settings.CHATSITE_RETRY_BUDGET_SECONDS = 0.5
    from conversations import llm as llm_module

    llm_module.reset_clients()
    llm.script([{"text": "too late", "first_byte_delay_ms": 2000, "repeat": 5}], match=token)
    sock = Socket(alice, conversation.pk)
    await sock.connect()
    created = await sock.send_message(f"slow {token}")
    _, end = await sock.follow_to_end(created["reply"]["generation_id"], timeout=30)
    assert end["message"]["status"] == "error" and end["message"]["error_code"] == "timeout"
    assert "too long" in end["message"]["error"]
    await sock.close()


async def test_disconnect_storm_every_client_ends_with_the_stored_text(llm, token, alice):
    """Many clients drop and reconnect at random points; nobody sees a gap, a duplicate or a hang."""
    rng = random.Random(1234)
    conversations = [await sync_to_async(services.conversation_create)(owner=alice) for _ in range(4)]
    texts = {}
    for i, conv in enumerate(conversations):
        texts[conv.pk] = _words(120, prefix=f"c{i}w")
        llm.script([{"text": texts[conv.pk], "tps": 150}], match=f"{token}-{i}")

    senders = [Socket(alice, conv.pk) for conv in conversations]
    gids = {}
    for i, (sock, conv) in enumerate(zip(senders, conversations)):
        await sock.connect()
        created = await sock.send_message(f"go {token}-{i}")
        gids[conv.pk] = (created["reply"]["generation_id"], created["reply"]["id"])

    async def flaky_client(conv_id: int) -> str:
        gid, _ = gids[conv_id]
        have = ""
        while True:
            sock = Socket(alice, conv_id)
            await sock.connect()
            await sock.send({"type": "follow", "generation_id": gid, "offset": len(have)})
            budget = rng.randint(1, 6)  # frames to read before this connection "drops"
            while budget:
                frame = await sock.receive(timeout=20)
                if frame.get("generation_id") != gid:
                    continue
                if frame["type"] == "generation.end":
                    await sock.close()
                    return have
                assert frame["offset"] <= len(have), "gap"
                have = have[: frame["offset"]] + frame["text"] if frame["offset"] + len(frame["text"]) > len(have) else have
                budget -= 1
            await sock.close()
            await asyncio.sleep(rng.random() * 0.05)

    clients = [flaky_client(conv.pk) for conv in conversations for _ in range(5)]
    results = await asyncio.gather(*clients, *(s.follow_to_end(gids[c.pk][0]) for s, c in zip(senders, conversations)))
    for conv in conversations:
        stored = await stored_message(gids[conv.pk][1])
        assert stored.status == Message.Status.COMPLETE and stored.content == texts[conv.pk]
    flaky, steady = results[: len(clients)], results[len(clients):]
    expected = [texts[conv.pk] for conv in conversations for _ in range(5)]
    assert list(flaky) == expected
    assert [text for text, _ in steady] == [texts[conv.pk] for conv in conversations]
    for sock in senders:
        await sock.close()


async def test_checkpoints_cost_the_same_statements_however_many_replies_are_live_and_however_long(llm, token, alice, monkeypatch, settings):
    """N replies streaming at once, short and long ones (20 vs 400 deltas, both ~1 s), are
    checkpointed together: the SQL each checkpoint executes does not grow with how many replies
    are live or with how much text they carry. Counted at the database connection, not taken
    from what the code says it did."""
    settings.CHATSITE_CHECKPOINT_SECONDS = 0.25
    from django.db import connection

    real = services.generation_checkpoint
    checkpoints: list[tuple[int, list[str]]] = []  # (live replies in it, SQL it executed)

    def counted(**kwargs):
        executed: list[str] = []

        def record(execute, sql, params, many, context):
            executed.append(sql)
            return execute(sql, params, many, context)

        with connection.execute_wrapper(record):  # (runs on the hub's database thread)
            result = real(**kwargs)
        checkpoints.append((len(kwargs["items"]), executed))
        return result

    monkeypatch.setattr(services, "generation_checkpoint", counted)
    n = 6
    conversations = [await sync_to_async(services.conversation_create)(owner=alice) for _ in range(n)]
    sockets, gids = [], []
    for i, conv in enumerate(conversations):
        words, tps = (20, 20) if i % 2 else (400, 400)
        llm.script([{"text": _words(words), "tps": tps}], match=f"{token}-{i}")
        sock = Socket(alice, conv.pk)
        await sock.connect()
        sockets.append(sock)
    for i, sock in enumerate(sockets):
        await sock.send({"type": "send", "content": f"go {token}-{i}", "client_id": str(i)})
    for i, sock in enumerate(sockets):  # (every socket of the person hears of every reply)
        created = await sock.receive_type("message.created")
        while created["client_id"] != str(i):
            created = await sock.receive_type("message.created")
        gids.append(created["reply"]["generation_id"])
    ends = await asyncio.gather(*(sock.follow_to_end(gid) for sock, gid in zip(sockets, gids)))
    assert all(end["message"]["status"] == "complete" for _, end in ends)

    together = [sql for live, sql in checkpoints if live == n]
    assert len(together) >= 2, f"no two checkpoints with all {n} replies live: {[live for live, _ in checkpoints]}"
    for live, sql in checkpoints:
        writes = [q for q in sql if q.lstrip().upper().startswith("UPDATE")]
        assert 1 <= len(writes) <= 2, f"{live} live replies took {len(writes)} UPDATEs: {writes}"
        assert len(sql) <= 3, f"{live} live replies took {len(sql)} statements: {sql}"
    for sock in sockets:
        await sock.close()


async def test_next_send_carries_the_finished_reply(llm, token, alice, conversation):
    sock = Socket(alice, conversation.pk)
    await sock.connect()
    llm.script([{"text": "answer one"}], match=f"one {token}")
    llm.script([{"text": "answer two"}], match=f"two {token}")
    created = await sock.send_message(f"one {token}")
    await sock.follow_to_end(created["reply"]["generation_id"])
    created = await sock.send_message(f"two {token}", client_id="c2")
    await sock.follow_to_end(created["reply"]["generation_id"])
    body = [r["body"] for r in llm.requests() if f"two {token}" in str(r["body"]["messages"])][-1]
    assert [m["content"] for m in body["messages"]] == [f"one {token}", "answer one", f"two {token}"]
    await sock.close()


async def test_next_send_after_a_stopped_reply_carries_its_kept_text(llm, token, alice, conversation):
    sock = Socket(alice, conversation.pk)
    await sock.connect()
    llm.script([{"text": _words(300), "tps": 60}], match=f"one {token}")
    created = await sock.send_message(f"one {token}")
    gid = created["reply"]["generation_id"]
    while not any(f["type"] == "delta" for f in sock.frames):
        await sock.receive()
    await sock.send({"type": "stop", "generation_id": gid})
    partial, _ = await sock.follow_to_end(gid)
    llm.script([{"text": "ok"}], match=f"two {token}")
    created = await sock.send_message(f"two {token}", client_id="c2")
    await sock.follow_to_end(created["reply"]["generation_id"])
    body = [r["body"] for r in llm.requests() if f"two {token}" in str(r["body"]["messages"])][-1]
    assert [m["content"] for m in body["messages"]] == [f"one {token}", partial, f"two {token}"]
    await sock.close()


async def test_a_store_failure_keeps_the_socket_and_reports_plainly(llm, token, alice, conversation, monkeypatch):
    """The send cannot be stored (a database error that is not an outage): the person is told
    plainly, without the error's own words, that the text is still in the box; the socket stays."""
    calls = []

    def broken(requests):  # the hub's send batcher calls it positionally with one list
        calls.append([r.content for r in requests])
        raise DatabaseError("could not extend file: disk full")

    sock = Socket(alice, conversation.pk)
    await sock.connect()
    monkeypatch.setattr(services, "message_send_many", broken)
    await sock.send({"type": "send", "content": f"hello {token}", "client_id": "x"})
    error = await sock.receive_type("error")
    assert calls and all(batch == [f"hello {token}"] for batch in calls), calls  # the failure path really ran
    assert error["code"] == "internal" and error["client_id"] == "x" and "still in the box" in error["message"]
    assert "disk full" not in error["message"] and "extend file" not in error["message"]
    await sock.send({"type": "ping"})
    assert (await sock.receive_type("pong"))["type"] == "pong"
    assert await sync_to_async(Message.objects.filter(conversation=conversation).count)() == 0
    assert hub_module.get_hub().runs == {}
    await sock.close()


async def test_a_reply_that_cannot_be_saved_shows_its_text_and_says_so_plainly(llm, token, alice, conversation, monkeypatch):
    """The final write fails with an error that is not an outage (retrying would not help): the
    reply ends at once with its text shown and "could not be saved", not the error's words."""
    calls = []

    def broken(finishes):
        calls.append(len(finishes))
        raise DatabaseError("could not extend file: disk full")

    monkeypatch.setattr(services, "generation_finish_many", broken)
    llm.script([{"text": "an answer that will not be kept"}], match=token)
    sock = Socket(alice, conversation.pk)
    await sock.connect()
    created = await sock.send_message(f"go {token}")
    streamed, end = await sock.follow_to_end(created["reply"]["generation_id"], timeout=15)
    assert calls, "the final write was never attempted"
    assert streamed == "an answer that will not be kept"
    assert "an answer that will not be kept" in end["message"]["html"]
    assert end["message"]["status"] == "error" and end["message"]["error"] == "The reply could not be saved."
    assert "disk full" not in str(end)
    await sock.send({"type": "ping"})
    assert (await sock.receive_type("pong"))["type"] == "pong"
    await sock.close()


async def test_a_final_write_during_a_database_outage_is_kept_and_saved_when_it_is_back(llm, token, alice, conversation, monkeypatch, settings):
    """While the database is unreachable the finished reply is kept and its write retried: the
    person is told it is not saved yet, then gets a normal end, and the text is stored."""
    settings.CHATSITE_FINAL_WRITE_BACKOFF_MAX_SECONDS = 0.2
    real = services.generation_finish_many
    failures = []

    def flaky(finishes):
        if len(failures) < 3:
            failures.append(len(finishes))
            raise OperationalError("connection to server at 127.0.0.1 failed: Connection refused")
        return real(finishes)

    monkeypatch.setattr(services, "generation_finish_many", flaky)
    llm.script([{"text": "kept through the outage"}], match=token)
    sock = Socket(alice, conversation.pk)
    await sock.connect()
    created = await sock.send_message(f"go {token}")
    streamed, end = await sock.follow_to_end(created["reply"]["generation_id"], timeout=15)
    assert len(failures) == 3
    notices = [f for f in sock.frames if f["type"] == "notice" and f.get("generation_id") == created["reply"]["generation_id"]]
    assert [n["code"] for n in notices].count("saving") == 1, notices
    assert end["message"]["status"] == "complete" and not end["message"]["error"]
    stored = await stored_message(created["reply"]["id"])
    assert (stored.status, stored.content) == (Message.Status.COMPLETE, "kept through the outage")
    await sock.close()
