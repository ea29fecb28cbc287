"""`make bench-cost`: what one long conversation costs in input tokens, three ways.

    .venv/bin/python bench/cost.py [--turns 200] [--seed 1] [--think 30,120] [--cache-ttl 5m]
                                   [--json out.json]

One scripted conversation (seeded: the person writes 40–400 words a turn, Claude answers with
150–700, some of it code; a ~3,000-token system prompt) is played against the fake Anthropic
API, which bills prompt caching as Anthropic does (breakpoints, 20-block lookback, here a
1,024-token minimum for every model, TTLs on a clock moved 30–120 s per turn):

(a) the full history every turn, no caching: the real SDK straight to the fake;
(b) the tutorial's summarize_and_trim: past 10 turns, every turn the utility model summarises
    all older messages (a JSON dump, max_tokens 512) and the main model gets [summary, ack,
    last 10 turns], no caching: the real SDK straight to the fake;
(c) Chatsite: a fresh SQLite database, services.message_send and the real runner and hub over
    the real SDK, a preset with caching on (5-minute TTL unless --cache-ttl 1h); Celery runs
    eagerly in this process (no REDIS_URL), so compaction and titles go through their real
    tasks. Its figures are the UsageRecords the app stored (replies, summaries, titles).

All three see the same person's messages and the same replies. Billed-equivalent input =
input + 0.1 × cache reads + 1.25 × 5-minute writes (+ 2 × 1-hour writes), summed over every
call whatever its model; cost uses the seeded prices (pricing.cost_of). Targets, from the
issue, on billed-equivalent input: (c) ≤ 10 % of (a) and ≤ 50 % of (b). Compaction settings
come from the environment like the app's (CHATSITE_CONTEXT_BUDGET_TOKENS=… to try others).
Exit code 0 when the benchmark ran (targets may FAIL), 1 when it could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from fakeanthropic.server import count_text_tokens, split_deltas  # noqa: E402
from tests.fakeserver import FakeAnthropicProcess  # noqa: E402

MAIN_MODEL = "claude-sonnet-5-5"
SYSTEM_PROMPT_CHARS = 12_000  # the fake counts 3,900 tokens for it on Sonnet 5.5 (four characters a token, times 1.3)
USER_WORDS = (40, 400, 80)  # triangular (low, high, mode)
REPLY_WORDS = (150, 700, 300)
THINK_SECONDS = (30.0, 120.0)
MIN_CACHE_TOKENS = 1024
KEEP_TURNS = 10  # (b): turns sent verbatim
TUTORIAL_SUMMARY_MAX_TOKENS = 512
MAIN_MAX_TOKENS = 4096  # (a) and (b); Chatsite uses CHATSITE_MAX_TOKENS (same default)
TARGET_VS_FULL = 0.10
TARGET_VS_TRIM = 0.50
TITLE_MATCH = "</reply>\n\nTitle:"  # only the title task's prompt ends like this
SUMMARY_MATCH = "<transcript>"  # only the compaction task's prompt holds this


def say(msg: str) -> None:
    print(f"bench-cost: {msg}", flush=True)


class BenchError(RuntimeError):
    pass


# --- The conversation ----------------------------------------------------------------------

WORDS = """
the a an and or but so if when while because although then also only just still even more
most less very quite rather often usually sometimes always never again already almost
we you they it this that these those which what who where how why there here each every some
any all both either neither other another such same different new old first last next
is are was were be been being have has had do does did can could will would should may might
must need want know think see look find use make take give keep let help try start stop run
call read write send store load save check test build deploy change move split merge join
data model request response cache token prompt system user server client query index table
column row field value key type class function method module package library service worker
queue task job event message thread process memory disk network socket stream buffer batch
file path config setting option flag default limit timeout retry error warning log trace
metric latency throughput budget cost price invoice account team project release version
branch commit review schema migration database transaction lock record ledger report chart
summary context window history turn reply answer question issue problem bug fix patch plan
idea step goal result reason detail example case point part side way time day week month
customer order payment product search page form button view template style layout screen
small large long short fast slow high low early late simple clear safe easy hard good better
python django postgres redis celery docker linux shell script json yaml http api sql orm
because of in on at to for from with without about into over under between after before
during through around against across per via by as like than until since within
""".split()

IDENTIFIERS = """
rows cursor batch item items user_id order total result payload conn session cache key value
retries delay limit offset page records summary tokens reply prompt client queue job task
""".split()
FUNCTIONS = """
fetch_rows load_config send_batch parse_line build_index retry_call compute_total
save_record flush_queue open_session read_events merge_results chunked normalise
""".split()
CLASSES = "Ledger Invoice Worker Pipeline Report Session Cursor Budget".split()

CODE_LINES = [
    "def {f}({a}, {b}={n}):",
    "    {a} = {f}({b})",
    "    if {a} is None:",
    "        return {b}",
    "    for {a} in {b}:",
    "        {a}.append({b})",
    "    {a} = {b}.get(\"{c}\", {n})",
    "    return {a}",
    "class {C}:",
    "    {a}: int = {n}",
    "    async def {f}(self, {a}):",
    "        await self.{f}({a}, {b})",
    "with open({a}) as {b}:",
    "    {a} = [{b} for {b} in {a} if {b}]",
    "        raise ValueError(\"{c} {d}\")",
    "    log.info(\"{c} %s\", {a})",
    "{a} = {C}({b}, limit={n})",
    "print({f}({a}))",
]
LOG_LINES = [
    "Traceback (most recent call last):",
    "  File \"app/{a}.py\", line {n}, in {f}",
    "    {a} = {f}({b})",
    "ERROR {C} {c} {d} after {n} ms",
    "WARNING {f}: {c} {d} ({a}={n})",
    "KeyError: '{a}'",
]


def _words(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(WORDS) for _ in range(n)]


def _prose(rng: random.Random, n: int) -> str:
    """Exactly n words of sentences in paragraphs of 30–90 words."""
    paragraphs: list[str] = []
    left = n
    while left > 0:
        size = min(left, rng.randint(30, 90))
        left -= size
        sentences = []
        while size > 0:
            k = min(size, rng.randint(6, 22))
            size -= k
            words = _words(rng, k)
            if k > 8 and rng.random() < 0.4:
                words[rng.randint(3, k - 3)] += ","
            words[0] = words[0].capitalize()
            sentences.append(" ".join(words) + ("?" if rng.random() < 0.08 else "."))
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


def _fill(rng: random.Random, template: str) -> str:
    return template.format(
        a=rng.choice(IDENTIFIERS), b=rng.choice(IDENTIFIERS), c=rng.choice(WORDS), d=rng.choice(WORDS),
        f=rng.choice(FUNCTIONS), C=rng.choice(CLASSES), n=rng.randint(1, 500),
    )


def _block(rng: random.Random, lines: int, kind: str) -> str:
    templates = CODE_LINES if kind == "python" else LOG_LINES
    body = "\n".join(_fill(rng, rng.choice(templates)) for _ in range(lines))
    return f"```{kind if kind == 'python' else 'text'}\n{body}\n```"


def _bullets(rng: random.Random, items: int) -> str:
    return "\n".join(f"- {' '.join(_words(rng, rng.randint(4, 14))).capitalize()}" for _ in range(items))


def _compose(rng: random.Random, n_words: int, parts: list[str]) -> str:
    """Prose around `parts` (code, lists) so the whole has about n_words words."""
    extra = sum(len(p.split()) for p in parts)
    prose = max(20, n_words - extra)
    head = max(10, int(prose * rng.uniform(0.3, 0.7)))
    out = [_prose(rng, head), *parts]
    if prose - head > 0:
        out.append(_prose(rng, prose - head))
    return "\n\n".join(out)


def user_message(rng: random.Random, marker: str) -> str:
    n = int(rng.triangular(*USER_WORDS))
    parts = []
    if rng.random() < 0.15:  # a pasted snippet or error log
        parts.append(_block(rng, rng.randint(4, max(5, n // 12)), rng.choice(["python", "log"])))
    # The marker routes the scripted reply on the fake; it is part of what every strategy sends.
    return f"[{marker}] " + _compose(rng, n, parts)


def assistant_reply(rng: random.Random) -> str:
    n = int(rng.triangular(*REPLY_WORDS))
    parts = []
    if rng.random() < 0.25:
        parts.append(_bullets(rng, rng.randint(3, 6)))
    if rng.random() < 0.35:
        parts.append(_block(rng, rng.randint(6, 25), "python"))
    return _compose(rng, n, parts)


def _fit_output(text: str, max_tokens: int) -> str:
    """Cut a scripted text so the fake streams it whole (one delta per word or 8-char chunk)."""
    words = text.split(" ")
    while len(split_deltas(" ".join(words))) > int(max_tokens * 0.95):
        words = words[: int(len(words) * 0.95)]
    return " ".join(words)


@dataclass(frozen=True)
class Turn:
    marker: str
    user: str
    assistant: str
    think_s: float


@dataclass
class Script:
    seed: int
    system_prompt: str
    turns: list[Turn]

    def summary_text(self, kind: str, k: int, words: int, max_tokens: int) -> str:
        rng = random.Random(f"{self.seed}-{kind}-{k}")
        return _fit_output(_prose(rng, words), max_tokens)


def build_script(seed: int, turns: int, think: tuple[float, float] = THINK_SECONDS) -> Script:
    rng = random.Random(seed)
    sections = ["Tone", "Answers", "Code", "Data and privacy", "When unsure", "Formatting", "Tools", "Escalation"]
    text = "You are Claude, the assistant of an engineering team. Follow these instructions in every reply.\n\n"
    while len(text) < SYSTEM_PROMPT_CHARS:
        text += f"## {rng.choice(sections)}\n\n{_prose(rng, rng.randint(60, 160))}\n\n"
    system_prompt = text[:SYSTEM_PROMPT_CHARS].rsplit(" ", 1)[0]
    out = []
    for t in range(1, turns + 1):
        marker = f"turn {t:04d} {rng.getrandbits(32):08x}"
        out.append(Turn(marker=marker, user=user_message(rng, marker), assistant=_fit_output(assistant_reply(rng), MAIN_MAX_TOKENS),
                        think_s=rng.uniform(*think)))
    return Script(seed=seed, system_prompt=system_prompt, turns=out)


# --- Figures -------------------------------------------------------------------------------


@dataclass
class Tally:
    requests: int = 0
    input: int = 0
    cache_write: int = 0
    cache_read: int = 0
    output: int = 0
    billed: float = 0.0
    cost: Decimal = Decimal(0)
    max_context: int = 0

    def add(self, usage, cost: Decimal) -> None:
        from conversations.pricing import billed_equivalent_input

        self.requests += 1
        self.input += usage.input_tokens
        self.cache_write += usage.cache_creation_input_tokens
        self.cache_read += usage.cache_read_input_tokens
        self.output += usage.output_tokens
        self.billed += billed_equivalent_input(usage)
        self.cost += cost
        self.max_context = max(self.max_context, usage.prompt_tokens)

    def __iadd__(self, other: "Tally") -> "Tally":
        for name in ("requests", "input", "cache_write", "cache_read", "output", "billed", "cost"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.max_context = max(self.max_context, other.max_context)
        return self


@dataclass
class Phase:
    name: str
    total: Tally = field(default_factory=Tally)
    parts: dict[str, Tally] = field(default_factory=dict)
    wall_s: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    def part(self, name: str) -> Tally:
        return self.parts.setdefault(name, Tally())

    def close(self) -> None:
        self.total = Tally()
        for tally in self.parts.values():
            self.total += tally


# --- The fake ------------------------------------------------------------------------------


class Fake:
    def __init__(self) -> None:
        # tps 0: no pacing, the replies come as fast as the fake can write them.
        self.process = FakeAnthropicProcess(tps=0).start()
        self.url = self.process.url

    def call(self, method: str, path: str, payload: object = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    def fresh(self) -> None:
        """Empty cache, queue and request log; a realistic cache minimum for every model."""
        self.call("POST", "/_fake/reset", {})
        self.call("POST", "/_fake/config", {"default_min_cache_tokens": MIN_CACHE_TOKENS})

    def script(self, text: str, match: str) -> None:
        self.call("POST", "/_fake/script", {"replies": [{"text": text}], "match": match})

    def advance(self, seconds: float) -> None:
        self.call("POST", "/_fake/clock", {"advance": seconds})

    def stop(self) -> None:
        self.process.stop()


# --- (a) and (b): the SDK straight to the fake ---------------------------------------------


def _sdk_usage(message) -> Any:
    from conversations.llm import Usage

    usage = Usage()
    usage.update(message.usage.model_dump())
    return usage


def _sdk_call(client, fake: Fake, prices, tally: Tally, *, model: str, max_tokens: int, system: str | None,
              messages: list[dict], reply: str, match: str) -> str:
    from conversations.pricing import cost_of

    fake.script(reply, match)
    kwargs: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": messages}
    if system:
        kwargs["system"] = system
    message = client.messages.create(**kwargs)
    text = "".join(b.text for b in message.content if b.type == "text")
    if text != reply:
        raise BenchError(f"the fake answered {match!r} with another text (routing broken?)")
    usage = _sdk_usage(message)
    tally.add(usage, cost_of(usage, prices).total)
    return text


def run_full_history(script: Script, fake: Fake, client, prices: dict) -> Phase:
    phase = Phase("(a) full history, no cache")
    history: list[dict] = []
    for t, turn in enumerate(script.turns, 1):
        if t % 25 == 0:
            fake.fresh()  # nothing is cached here; this only keeps the fake's request log (bodies up to ~0.7 MB) small
        history.append({"role": "user", "content": turn.user})
        _sdk_call(client, fake, prices[MAIN_MODEL], phase.part("replies"), model=MAIN_MODEL, max_tokens=MAIN_MAX_TOKENS,
                  system=script.system_prompt, messages=history, reply=turn.assistant, match=turn.marker)
        history.append({"role": "assistant", "content": turn.assistant})
        fake.advance(turn.think_s)
    phase.close()
    return phase


def summarize_and_trim(script: Script, fake: Fake, client, prices: dict, utility: str, tally: Tally,
                       history: list[dict], t: int) -> list[dict]:
    """The tutorial's way: past KEEP_TURNS turns, summarise everything older, every turn."""
    keep = 2 * KEEP_TURNS + 1  # the last 10 exchanges and the new message
    if len(history) <= keep:
        return history
    older, recent = history[:-keep], history[-keep:]
    marker = f"summary request {t:04d}"
    summary = _sdk_call(
        client, fake, prices[utility], tally, model=utility, max_tokens=TUTORIAL_SUMMARY_MAX_TOKENS, system=None,
        messages=[{"role": "user", "content": f"({marker}) Summarize this conversation so far, keeping every fact and decision:\n\n{json.dumps(older)}"}],
        reply=script.summary_text("trim", t, 400, TUTORIAL_SUMMARY_MAX_TOKENS), match=marker,
    )
    return [
        {"role": "user", "content": f"Summary of our conversation so far: {summary}"},
        {"role": "assistant", "content": "Got it, I have the context of our earlier conversation."},
        *recent,
    ]


def run_trimmed(script: Script, fake: Fake, client, prices: dict, utility: str) -> Phase:
    phase = Phase("(b) last 10 turns + summary")
    history: list[dict] = []
    for t, turn in enumerate(script.turns, 1):
        if t % 25 == 0:
            fake.fresh()
        history.append({"role": "user", "content": turn.user})
        messages = summarize_and_trim(script, fake, client, prices, utility, phase.part("summaries"), history, t)
        _sdk_call(client, fake, prices[MAIN_MODEL], phase.part("replies"), model=MAIN_MODEL, max_tokens=MAIN_MAX_TOKENS,
                  system=script.system_prompt, messages=messages, reply=turn.assistant, match=turn.marker)
        history.append({"role": "assistant", "content": turn.assistant})
        fake.advance(turn.think_s)
    phase.notes["summaries"] = phase.part("summaries").requests
    phase.close()
    return phase


# --- (c) Chatsite --------------------------------------------------------------------------


def setup_django(tmpdir: Path, fake_url: str) -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="chatsite.settings",
        DEBUG="0",
        SECRET_KEY="bench-" + secrets.token_urlsafe(32),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        DATABASE_URL=f"sqlite:///{tmpdir / 'cost.sqlite3'}",
        # No Redis: in-memory channel layer and eager Celery, so compaction and titles run
        # through their real tasks in this process, right after the reply that asks for them.
        REDIS_URL="",
        ANTHROPIC_BASE_URL=fake_url,
        ANTHROPIC_API_KEY="bench",
    )
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    if not settings.CELERY_TASK_ALWAYS_EAGER:
        raise BenchError("Celery is not eager: compaction and titles would not run")
    # One INFO line per eager task and a broker notice would break up the table.
    logging.getLogger("celery.app.trace").setLevel(logging.WARNING)
    logging.getLogger("kombu.connection").setLevel(logging.ERROR)
    call_command("migrate", interactive=False, verbosity=0)


class ChatsiteScripter:
    """Keeps replies waiting on the fake for the calls the app decides to make on its own: one
    title, and rolling summaries that grow with what they absorb."""

    def __init__(self, script: Script, fake: Fake, conversation_id: int) -> None:
        self.script, self.fake, self.conversation_id = script, fake, conversation_id
        self.summaries = 0
        self.titles = 0

    def top_up(self) -> None:
        from django.conf import settings

        from conversations.models import UsageRecord

        used = UsageRecord.objects.filter(conversation_id=self.conversation_id, kind=UsageRecord.Kind.SUMMARY).count()
        while self.summaries - used < 2:
            # A rolling summary grows as it absorbs more, up to the output cap.
            words = min(int(settings.CHATSITE_SUMMARY_MAX_TOKENS * 0.8), 400 + 100 * (self.summaries + 1))
            self.fake.script(self.script.summary_text("rolling", self.summaries, words, settings.CHATSITE_SUMMARY_MAX_TOKENS), SUMMARY_MATCH)
            self.summaries += 1
        if not self.titles:
            self.fake.script("Tuning the ledger pipeline's batch jobs", TITLE_MATCH)
            self.titles += 1


def chatsite_setup(script: Script, cache_ttl: str) -> int:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    from conversations import services
    from conversations.models import SystemPrompt

    user = get_user_model().objects.create(username=f"bench-cost-{secrets.token_hex(3)}", password=make_password(None))
    preset = SystemPrompt.objects.create(name="Bench: engineering assistant", text=script.system_prompt, cache_enabled=True, cache_ttl=cache_ttl)
    return services.conversation_create(owner=user, model=MAIN_MODEL, preset_id=preset.pk).pk


async def chatsite_turns(script: Script, fake: Fake, conversation_id: int) -> None:
    from conversations import runner, services
    from conversations.asyncdb import request_db
    from conversations.hub import Hub
    from conversations.models import Conversation

    scripter = ChatsiteScripter(script, fake, conversation_id)
    hub = Hub()
    try:
        for turn in script.turns:
            # The fake's control calls are quick local HTTP; nothing else runs on this loop now.
            fake.script(turn.assistant, turn.marker)
            await request_db(scripter.top_up)()
            conversation = await request_db(Conversation.objects.get)(pk=conversation_id)
            _, _, spec = await request_db(services.message_send)(conversation=conversation, content=turn.user, runner="bench-cost")
            await runner.start(hub, spec).task  # finishing runs reply_followups: eager title/compaction tasks
            fake.advance(turn.think_s)
    finally:
        await hub.close()


def chatsite_figures(script: Script, conversation_id: int, phase: Phase) -> None:
    from conversations import selectors
    from conversations.llm import Usage
    from conversations.models import Conversation, Message, Summary, UsageRecord

    per_call = []
    for r in UsageRecord.objects.filter(conversation_id=conversation_id).order_by("id"):
        per_call.append({"kind": r.kind, "input": r.input_tokens, "write": r.cache_write_5m_tokens + r.cache_write_1h_tokens,
                         "read": r.cache_read_tokens, "output": r.output_tokens})
        usage = Usage(
            input_tokens=r.input_tokens, output_tokens=r.output_tokens,
            cache_creation_input_tokens=r.cache_write_5m_tokens + r.cache_write_1h_tokens,
            cache_read_input_tokens=r.cache_read_tokens, cache_creation_1h_input_tokens=r.cache_write_1h_tokens,
        )
        phase.part({"reply": "replies", "summary": "summaries", "title": "titles"}.get(r.kind, r.kind)).add(usage, r.cost)
    phase.close()
    conversation = Conversation.objects.get(pk=conversation_id)
    replies = [m for m in selectors.conversation_thread(conversation=conversation) if m.role == Message.Role.ASSISTANT]
    failed = []
    for i, (m, turn) in enumerate(zip(replies, script.turns), 1):
        if m.status != Message.Status.COMPLETE or m.error_code:
            failed.append(f"turn {i}: {m.status} {m.error_code} {m.error[:80]}")
        elif m.content != turn.assistant:
            failed.append(f"turn {i}: stored text is not the scripted reply")
    if len(replies) != len(script.turns):
        failed.append(f"{len(replies)} replies on the thread for {len(script.turns)} turns")
    summaries = list(Summary.objects.filter(conversation=conversation).order_by("id"))
    phase.notes.update(
        compaction_steps=len(summaries),
        summary_calls=phase.parts.get("summaries", Tally()).requests,
        title_calls=phase.parts.get("titles", Tally()).requests,
        summaries_covered=[s.covered_messages for s in summaries],
        trimmed_replies=sum(1 for m in replies if m.context_note),
        failed_replies=failed,
        final_title=conversation.title,
        final_context_tokens=conversation.context_tokens,
        calls=per_call,  # in order, for the JSON file
    )


def run_chatsite(script: Script, fake: Fake, cache_ttl: str) -> Phase:
    from django.db import connections

    phase = Phase("(c) Chatsite")
    conversation_id = chatsite_setup(script, cache_ttl)
    connections.close_all()
    asyncio.run(chatsite_turns(script, fake, conversation_id))
    phase.notes["fake_cache"] = fake.call("GET", "/_fake/stats").get("cache")
    chatsite_figures(script, conversation_id, phase)
    return phase


# --- Report --------------------------------------------------------------------------------

COLUMNS = ("requests", "input", "cache write", "cache read", "output", "billed-eq input", "cost USD")


def _row(label: str, t: Tally) -> str:
    cells = [f"{t.requests:,}", f"{t.input:,}", f"{t.cache_write:,}", f"{t.cache_read:,}", f"{t.output:,}", f"{t.billed:,.0f}", f"{t.cost:,.4f}"]
    return f"{label:<32}" + "".join(f"{c:>16}" for c in cells)


def table(phases: list[Phase]) -> str:
    lines = [f"{'strategy':<32}" + "".join(f"{c:>16}" for c in COLUMNS)]
    for p in phases:
        lines.append(_row(p.name, p.total))
        if len(p.parts) > 1:
            for name, tally in p.parts.items():
                lines.append(_row(f"    {name}", tally))
    return "\n".join(lines)


def _ratio(x: float, y: float) -> float:
    return x / y if y else math.inf


def verdicts(a: Phase, b: Phase, c: Phase) -> list[tuple[str, float, float, bool]]:
    out = []
    for what, get in (("billed-eq input", lambda p: p.total.billed), ("cost", lambda p: float(p.total.cost))):
        for other, limit in ((a, TARGET_VS_FULL), (b, TARGET_VS_TRIM)):
            r = _ratio(get(c), get(other))
            out.append((f"{what} (c)/{other.name[:3]}", r, limit, r <= limit))
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--turns", type=int, default=200)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--think", default=f"{THINK_SECONDS[0]:.0f},{THINK_SECONDS[1]:.0f}",
                   help="seconds the fake's clock moves between turns: MIN,MAX (default 30,120)")
    p.add_argument("--cache-ttl", choices=("5m", "1h"), default="5m", help="the preset's cache TTL in (c) (default 5m)")
    p.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    a = p.parse_args(argv)
    low, high = (float(x) for x in a.think.split(","))
    a.think = (low, high)
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    started = time.monotonic()
    tmpdir = Path(tempfile.mkdtemp(prefix="chatsite-bench-cost-"))
    fake: Fake | None = None
    try:
        fake = Fake()
        setup_django(tmpdir, fake.url)
        import anthropic
        from django.conf import settings

        from conversations import compaction, modelcache
        from conversations.models import LLMModel
        from conversations.pricing import Prices

        script = build_script(a.seed, a.turns, a.think)
        utility = modelcache.utility_model()
        main_row = LLMModel.objects.get(model_id=MAIN_MODEL)
        prices = {row.model_id: Prices.of(row) for row in LLMModel.objects.all()}
        high, low = compaction.thresholds(main_row)
        user_tokens = sum(count_text_tokens(t.user, MAIN_MODEL) for t in script.turns)
        reply_tokens = sum(count_text_tokens(t.assistant, MAIN_MODEL) for t in script.turns)
        say(f"{a.turns} turns (seed {a.seed}): system prompt {count_text_tokens(script.system_prompt, MAIN_MODEL):,} tokens; "
            f"person {user_tokens / a.turns:,.0f} and Claude {reply_tokens / a.turns:,.0f} tokens a turn on average "
            f"({user_tokens + reply_tokens:,} in all); main {MAIN_MODEL}, utility {utility.model_id}")
        say(f"fake at {fake.url}: cache minimum {MIN_CACHE_TOKENS} tokens, clock +{a.think[0]:.0f}–{a.think[1]:.0f} s a turn")
        say(f"Chatsite: compaction at {high:,} → {low:,} tokens (CHATSITE_CONTEXT_BUDGET_TOKENS={settings.CHATSITE_CONTEXT_BUDGET_TOKENS}, "
            f"HIGH_WATER_SHARE={settings.CHATSITE_COMPACT_HIGH_WATER_SHARE}, LOW_WATER_RATIO={settings.CHATSITE_COMPACT_LOW_WATER_RATIO}), "
            f"summary max {settings.CHATSITE_SUMMARY_MAX_TOKENS} tokens, prompt caching {'on, TTL ' + a.cache_ttl if settings.CHATSITE_PROMPT_CACHING else 'off'}")
        client = anthropic.Anthropic(api_key="bench", base_url=fake.url, max_retries=0, timeout=120.0)
        phases: list[Phase] = []
        for run in (lambda: run_full_history(script, fake, client, prices),
                    lambda: run_trimmed(script, fake, client, prices, utility.model_id),
                    lambda: run_chatsite(script, fake, a.cache_ttl)):
            fake.fresh()
            t0 = time.monotonic()
            phase = run()
            phase.wall_s = time.monotonic() - t0
            say(f"{phase.name}: {phase.total.requests} requests in {phase.wall_s:.1f} s")
            phases.append(phase)
        full, trimmed, chatsite = phases
        checks = verdicts(full, trimmed, chatsite)
        n = chatsite.notes
        failed = n["failed_replies"]
        print()
        print(table(phases))
        print()
        for label, ratio, limit, ok in checks:
            print(f"{label:<28} {ratio * 100:6.1f} %   target ≤ {limit * 100:.0f} %   {'PASS' if ok else 'FAIL'}")
        print()
        print(f"(c) compaction steps {n['compaction_steps']} (summary calls {n['summary_calls']}, messages covered after each: "
              f"{n['summaries_covered']}); title calls {n['title_calls']} (title: {n['final_title']!r})")
        print(f"max context (prompt tokens): (a) {full.total.max_context:,}  (b) {trimmed.total.max_context:,}  "
              f"(c) {chatsite.parts.get('replies', Tally()).max_context:,}  (c summaries) {chatsite.parts.get('summaries', Tally()).max_context:,}")
        print(f"(c) replies trimmed to fit the window: {n['trimmed_replies']}; fake cache: {n['fake_cache']}")
        print(f"(c) failed replies: {len(failed)}" + "".join(f"\n    {f}" for f in failed[:20]))
        print(f"wall time {time.monotonic() - started:.1f} s: " + ", ".join(f"{p.name[:3]} {p.wall_s:.1f} s" for p in phases))
        met = all(ok for label, _, _, ok in checks if label.startswith("billed")) and not failed
        print(f"RESULT turns={a.turns} targets={'PASS' if met else 'FAIL'} failed_replies={len(failed)}", flush=True)
        if a.json:
            payload = {
                "args": vars(a),
                "phases": [{"name": p.name, "wall_s": p.wall_s, "total": asdict(p.total),
                            "parts": {k: asdict(v) for k, v in p.parts.items()}, "notes": p.notes} for p in phases],
                "verdicts": [{"what": label, "ratio": r, "limit": lim, "pass": ok} for label, r, lim, ok in checks],
            }
            Path(a.json).write_text(json.dumps(payload, indent=2, default=str))
            say(f"wrote {a.json}")
        return 0
    except (BenchError, RuntimeError) as exc:
        say(f"error: {exc}")
        return 1
    finally:
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: BLE001 - Django may not be set up
            pass
        if fake is not None:
            fake.stop()
        shutil.rmtree(tmpdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
