"""The fault scenarios of docs/reliability.md, run against a FaultStack (tests/faultkit.py).

Each returns a `Report` of what the clients and the store ended up with; the fault tests
assert on it and bench/faults.py prints it as a table. The clients apply frames as
docs/protocol.md says (wsclient.ProtocolSocket).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.wsclient import ChatClient, ProtocolSocket


@dataclass
class Report:
    scenario: str
    replies: int = 0
    sockets: int = 0
    # Characters of the replies that a socket or the store is missing at the end (0: nothing lost).
    lost_chars: int = 0
    ends_per_socket: list[int] = field(default_factory=list)
    # Ends that came before the whole text (what the protocol forbids).
    short_ends: int = 0
    closed_sockets: int = 0
    # Seconds from the server being back to the last reply ended on every socket.
    recover_seconds: float | None = None
    statuses: dict[str, int] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    def ends(self) -> str:
        if not self.ends_per_socket:
            return "-"
        low, high = min(self.ends_per_socket), max(self.ends_per_socket)
        return str(low) if low == high else f"{low}-{high}"


def _words(n: int, tag: str) -> str:
    return " ".join(f"{tag}{i:03d}" for i in range(n))


def _tally(report: Report, pairs: list[tuple[ProtocolSocket, str, str]], stored: list[tuple[str, str]]) -> None:
    """What each (socket, generation, expected text) ended with, and what the store holds."""
    losses = report.notes.setdefault("losses", [])
    for sock, gid, text in pairs:
        seen = sock.texts.get(gid, "")
        lost = len(text) - len(seen) if text.startswith(seen) else len(text)
        if lost:
            losses.append(f"socket on conversation {sock.conversation_id} lacks {lost} of {len(text)} characters of {gid}")
        report.lost_chars += lost
        report.ends_per_socket.append(len(sock.ends.get(gid, [])))
        report.closed_sockets += sock.reader.done()
        for end in sock.ends.get(gid, [])[:1]:
            status = end["message"]["status"]
            report.statuses[status] = report.statuses.get(status, 0) + 1
    report.short_ends += sum(len(sock.short_ends) for sock in {id(s): s for s, _, _ in pairs}.values())
    report.sockets += len({id(s) for s, _, _ in pairs})
    contents = {content for content, status in stored if status == "complete"}
    for text in {text for _, _, text in pairs}:
        if text not in contents:
            best = max((len(c) for c, _ in stored if text.startswith(c)), default=0)
            losses.append(f"the store lacks {len(text) - best} of {len(text)} characters of {text[:12]}…")
            report.lost_chars += len(text) - best


async def _wait_all(pairs: list[tuple[ProtocolSocket, str, str]], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for sock, gid, _ in pairs:
        try:
            await sock.wait(lambda s=sock, g=gid: g in s.ends, timeout=max(0.1, deadline - loop.time()), what="an end")
        except AssertionError:
            return  # counted in the report as a missing end


async def _send(sock: ProtocolSocket, content: str, client_id: str) -> str:
    since = len(sock.frames)
    await sock.send({"type": "send", "content": content, "client_id": client_id})
    return (await sock.first("message.created", since, client_id=client_id))["reply"]["generation_id"]


async def postgres_outage(stack, postgres, fake, *, replies: int = 20, outage: float = 30.0) -> Report:
    """PostgreSQL stopped while `replies` replies end, started again after `outage` seconds; the
    reaper runs the moment it is back. Each reply's socket is on one process, a watcher on the
    other. notes: the code of a send refused during the outage, the reaper's count, the status
    of each process's first page and handshake after the outage, the saving notices seen."""
    report = Report(f"PostgreSQL down {outage:.0f} s while {replies} replies end", replies=replies)
    token = uuid.uuid4().hex[:10]
    texts = [_words(30, f"r{i}w") for i in range(replies)]
    for i, text in enumerate(texts):
        fake.script([{"text": text, "tps": 12}], match=f"go {token} {i}.")  # about 2.5 s each
    client = ChatClient(stack.url)
    try:
        await client.signup(f"pg{token}")
        conversations = [await client.new_conversation() for _ in range(replies)]
        own = [await ProtocolSocket.open(client, c, stack.urls[i % 2]) for i, c in enumerate(conversations)]
        watchers = [await ProtocolSocket.open(client, c, stack.urls[(i + 1) % 2]) for i, c in enumerate(conversations)]
        gids = [await _send(sock, f"go {token} {i}.", f"c{i}") for i, sock in enumerate(own)]
        for sock, gid in zip(own, gids):
            await sock.wait(lambda s=sock, g=gid: len(s.texts.get(g, "")) > 0, what="streaming")

        postgres.stop()
        down_at = time.monotonic()
        for sock, gid, text in zip(own, gids, texts):
            await sock.wait(lambda s=sock, g=gid, t=text: s.texts.get(g) == t or g in s.ends, timeout=20, what="the whole text")
        for sock, gid in zip(own, gids):  # (or its end, if it came: both are counted below)
            await sock.wait(lambda s=sock, g=gid: g in s.ends or any(n["code"] == "saving" for n in s.notices.get(g, [])),
                            timeout=20, what="the saving notice")
        report.notes["ended while down"] = sum(gid in sock.ends for sock, gid in zip(own, gids))
        report.notes["saving notices"] = sum(any(n["code"] == "saving" for n in sock.notices.get(gid, [])) for sock, gid in zip(own, gids))
        since = len(own[0].frames)
        await own[0].send({"type": "send", "content": f"during the outage {token}", "client_id": "outage"})
        refused = await own[0].first("error", since, timeout=15, client_id="outage")
        report.notes["send refused"] = refused["code"]
        report.notes["refusal"] = refused["message"]

        await asyncio.sleep(max(0.0, outage - (time.monotonic() - down_at)))
        postgres.start()
        back_at = time.monotonic()
        reaped = stack.manage("recover_generations")
        report.notes["reaped"] = int(reaped.split()[1])
        first = []
        for base in stack.urls:
            async with client.session.get(base + f"/chat/{conversations[0]}/") as response:
                first.append(response.status)
            try:
                sock = await ProtocolSocket.open(client, conversations[0], base)
                await sock.first("hello")
                await sock.close()
                first.append(101)
            except Exception as exc:  # noqa: BLE001 - reported
                first.append(getattr(exc, "status", 0))
        report.notes["first requests"] = first

        pairs = [(sock, gid, text) for socks in (own, watchers) for sock, gid, text in zip(socks, gids, texts)]
        await _wait_all(pairs, timeout=40)
        report.recover_seconds = round(time.monotonic() - back_at, 2)
        await asyncio.sleep(0.3)  # a second end, if any, would have come by now
        stored = stack.stored_replies()
        _tally(report, pairs, stored)
        report.notes["outage send stored"] = any(f"during the outage {token}" in content for content, _ in stored)
    finally:
        await client.close()
    return report


async def redis_outage(stack, redis_server, fake, *, mode: str, seconds: float = 20.0) -> Report:
    """Redis killed (`kill`: then restarted empty once the reply has ended) or hung (`pause`: for
    `seconds`) while a reply runs on process A, followed by a socket on A and one on B. notes: the
    text A's socket had each second during the outage (growing: the reply goes on), the pages
    and log-ins served meanwhile, whether sending works across processes afterwards."""
    report = Report("Redis killed, restarted empty" if mode == "kill" else f"Redis hung {seconds:.0f} s", replies=1)
    token = uuid.uuid4().hex[:10]
    text = _words(200 if mode == "kill" else 300, "k" if mode == "kill" else "h")
    fake.script([{"text": text, "tps": 40 if mode == "kill" else 30}], match=f"go {token}.")
    client = ChatClient(stack.url)
    username = f"r{token}"
    try:
        await client.signup(username)
        conversation = await client.new_conversation()
        on_a = await ProtocolSocket.open(client, conversation, stack.urls[0])
        on_b = await ProtocolSocket.open(client, conversation, stack.urls[1])
        gid = await _send(on_a, f"go {token}.", "go")
        await on_b.wait(lambda: len(on_b.texts.get(gid, "")) > 20, what="B following")

        loop = asyncio.get_running_loop()
        redis_server.kill() if mode == "kill" else redis_server.pause()
        down_at = loop.time()
        lengths = []
        for _ in range(5):
            lengths.append(len(on_a.texts.get(gid, "")))
            await asyncio.sleep(1)
        report.notes["A's text each second"] = lengths
        report.notes["served meanwhile"] = await _pages_and_logins(stack, username, conversation)
        report.notes["a new chat meanwhile"] = await _new_chat(client, stack.urls[0], fake)
        if mode == "kill":
            await on_a.wait(lambda: gid in on_a.ends, timeout=20, what="A's end")
            redis_server.restart()
        else:
            await asyncio.sleep(max(0.0, seconds - (loop.time() - down_at)))
            redis_server.resume()
        back_at = time.monotonic()
        pairs = [(on_a, gid, text), (on_b, gid, text)]
        await _wait_all(pairs, timeout=40)
        report.recover_seconds = round(time.monotonic() - back_at, 2)
        await asyncio.sleep(0.3)
        _tally(report, pairs, stack.stored_replies())
        report.notes["sending across processes after"] = await _send_across(on_a, on_b, fake)
    finally:
        await client.close()
    return report


async def _new_chat(client: ChatClient, base: str, fake) -> str:
    """A new conversation on one process, a message sent and answered there: the status of its end."""
    token = uuid.uuid4().hex[:10]
    fake.script([{"text": "answered meanwhile"}], match=f"meanwhile {token}.")
    try:
        sock = await ProtocolSocket.open(client, await client.new_conversation(), base)
        gid = await _send(sock, f"meanwhile {token}.", "meanwhile")
        await sock.wait(lambda: gid in sock.ends, timeout=20, what="the end")
        await sock.close()
        return sock.ends[gid][0]["message"]["status"] if sock.texts.get(gid) == "answered meanwhile" else "text differs"
    except Exception as exc:  # noqa: BLE001 - reported
        return f"failed: {exc}"


async def _pages_and_logins(stack, username: str, conversation: int) -> list[int]:
    statuses = []
    for base in stack.urls:
        other = ChatClient(base)
        try:
            statuses.append(await other.login(username))
            async with other.session.get(base + f"/chat/{conversation}/") as response:
                statuses.append(response.status)
        finally:
            await other.close()
    return statuses


async def _send_across(on_a: ProtocolSocket, on_b: ProtocolSocket, fake) -> str:
    """A send on B, announced to A and followed there to its end: "ok", or what went wrong.
    Each process first tells its sockets it sees Redis back (a second `hello`; docs/protocol.md)."""
    try:
        for sock in (on_a, on_b):
            await sock.wait(lambda s=sock: s.hellos >= 2, timeout=10, what="hello again after the outage")
        token = uuid.uuid4().hex[:10]
        fake.script([{"text": "after the outage " + token}], match=f"again {token}.")
        since_a = len(on_a.frames)
        gid = await _send(on_b, f"again {token}.", "again")
        await on_a.first("message.created", since_a, timeout=10, client_id="again")
        await on_a.send({"type": "follow", "generation_id": gid, "offset": 0})
        for sock in (on_a, on_b):
            await sock.wait(lambda s=sock: gid in s.ends, timeout=20, what="the new reply's end")
        return "ok" if on_a.texts[gid] == on_b.texts[gid] == "after the outage " + token else f"texts differ: {on_a.texts[gid]!r} {on_b.texts[gid]!r}"
    except AssertionError as exc:
        return str(exc)


async def late_follows(stack, fake, *, trials: int = 10, followers: int = 20, seed: int = 12) -> Report:
    """Sockets on process B ask to follow a reply that process A is just finishing: `followers`
    per reply, each at a random moment in the last 200 ms or so."""
    report = Report(f"{trials * followers} late follows across processes", replies=trials)
    rng = random.Random(seed)
    client = ChatClient(stack.url)
    pairs: list[tuple[ProtocolSocket, str, str]] = []
    try:
        await client.signup(f"late{uuid.uuid4().hex[:10]}")
        conversation = await client.new_conversation()
        on_a = await ProtocolSocket.open(client, conversation, stack.urls[0])
        for trial in range(trials):
            token = uuid.uuid4().hex[:10]
            text = " ".join(f"t{trial}w{i:02d}" for i in range(40))
            fake.script([{"text": text, "tps": 40}], match=f"late {token}.")  # about 1 s
            late = [await ProtocolSocket.open(client, conversation, stack.urls[1]) for _ in range(followers)]
            gid = await _send(on_a, f"late {token}.", token)
            await on_a.wait(lambda: len(on_a.texts.get(gid, "")) >= len(text) * 0.85, what="most of the reply")

            async def follow(sock: ProtocolSocket) -> None:
                await asyncio.sleep(rng.uniform(0, 0.2))
                await sock.send({"type": "follow", "generation_id": gid, "offset": 0})

            await asyncio.gather(*(follow(sock) for sock in late))
            trial_pairs = [(sock, gid, text) for sock in late]
            await _wait_all(trial_pairs, timeout=20)
            await asyncio.sleep(0.3)
            _tally(report, trial_pairs, [(text, "complete")])  # the store is checked by the other scenarios
            pairs += trial_pairs
            for sock in late:
                await sock.close()
        report.closed_sockets = 0  # (closed by us after each trial)
    finally:
        await client.close()
    return report


async def upstream_retry_after(stack, fake, *, retry_after: float = 40.0) -> Report:
    """Anthropic answers 429 asking to wait `retry_after` s, more than the retry budget: the
    reply must fail at once, saying so. notes: how long the person waited for the end."""
    report = Report(f"429 with retry-after {retry_after:.0f} s", replies=1)
    token = uuid.uuid4().hex[:10]
    fake.script([{"status": 429, "retry_after_ms": int(retry_after * 1000), "repeat": 5}], match=f"busy {token}.")
    client = ChatClient(stack.url)
    try:
        await client.signup(f"busy{token}")
        conversation = await client.new_conversation()
        sock = await ProtocolSocket.open(client, conversation, stack.urls[0])
        started = time.monotonic()
        gid = await _send(sock, f"busy {token}.", "busy")
        await sock.wait(lambda: gid in sock.ends, timeout=retry_after * 4, what="the end")
        report.notes["waited"] = round(time.monotonic() - started, 2)
        _tally(report, [(sock, gid, "")], [("", "error")])
        report.notes["error"] = sock.ends[gid][0]["message"]["error"]
    finally:
        await client.close()
    return report
