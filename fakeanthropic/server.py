"""A local fake of the Anthropic Messages API, built on aiohttp.web.

The real ``anthropic`` SDK is pointed at it with ``base_url``.  Tests script the
replies through the ``/_fake/*`` control endpoints; with nothing scripted every
request gets the offline demo answer (see ``demo.py``).

Cheap per event: the SSE frames of a reply are built as bytes before the pacing
loop, which then only sleeps and calls ``resp.write()`` once per frame.

Prompt caching is billed as Anthropic bills it (``FakeState.usage_for``): up to four
``cache_control`` breakpoints (plus top-level automatic caching), 5m/1h TTLs on a clock
tests can move (``POST /_fake/clock {"advance": s}``), a 20-block lookback, a per-model
minimum prefix (``POST /_fake/config``), and input + read + written == count_tokens.

Strict per model (``strict.py``): for the models of Chatsite's catalogue the fake refuses what
the real API refuses (prefill, sampling parameters, thinking budgets, thinking turned off where
it cannot be, prompts past the context window) with the real status, type and message, and
streams what they stream by default: a thinking block (signature only, its text omitted) before
the text, its tokens counted toward max_tokens. Tokens are counted the way the model's tokenizer
does: four UTF-8 bytes a token for the older tokenizer, times the model's factor (1.3 for the
catalogue's models), so non-Latin text costs more than a characters-per-token rule expects.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import logging
import math
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from . import strict
from .demo import demo_reply

log = logging.getLogger("fakeanthropic")

REQUEST_LOG_CAP = 500
STAMP_DELTAS_DEFAULT = 100
MAX_CHUNK = 8  # long words are split into chunks of this many characters

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
ERROR_MESSAGES = {
    "invalid_request_error": "Invalid request",
    "authentication_error": "invalid x-api-key",
    "permission_error": "Your API key does not have permission to use the specified resource.",
    "not_found_error": "The requested resource could not be found.",
    "request_too_large": "Request exceeds the maximum allowed number of bytes.",
    "rate_limit_error": "Number of requests has exceeded your rate limit (fake).",
    "api_error": "Internal server error (fake)",
    "overloaded_error": "Overloaded",
}


# --------------------------------------------------------------------------- helpers


def approx_tokens(n_units: int, hundredths: int = 100) -> int:
    """The fake's tokenizer: four units (UTF-8 bytes; characters for ASCII) a token for the older
    Claude tokenizer, times the model's factor in hundredths (130: 30 % more)."""
    return -(-n_units * hundredths // 400) if n_units > 0 else 0


def text_units(text: str) -> int:
    """What the fake's tokenizer counts in a text: its UTF-8 bytes."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def count_text_tokens(text: str, model: str) -> int:
    """Tokens of one text for a model, as the fake counts a prompt made of just that text."""
    return approx_tokens(text_units(text), strict.tokenizer_hundredths(model))


_TOKEN_RE = re.compile(r"(\S+)(\s*)|(\s+)")


def split_deltas(text: str, max_chunk: int = MAX_CHUNK) -> list[str]:
    """Split text into "tokens": a word plus its following whitespace, long words
    chunked at ``max_chunk`` characters.  ``"".join(result) == text``."""
    out: list[str] = []
    append = out.append
    for m in _TOKEN_RE.finditer(text):
        word, space, lead = m.group(1), m.group(2), m.group(3)
        if word is None:  # leading whitespace
            append(lead)
        elif len(word) <= max_chunk:
            append(word + space)
        else:
            last = len(word) - max_chunk
            for i in range(0, len(word), max_chunk):
                append(word[i : i + max_chunk] + (space if i >= last else ""))
    return out


def _block_text(block: Any) -> str:
    """Text of one content block (text, tool_use input, tool_result content...)."""
    if isinstance(block, str):
        return block
    if not isinstance(block, dict):
        return ""
    btype = block.get("type")
    if btype == "text":
        return str(block.get("text", ""))
    if btype == "tool_use":
        return json.dumps(block.get("input", {}))
    if btype == "tool_result":
        content = block.get("content", "")
        if isinstance(content, list):
            return "".join(_block_text(b) for b in content)
        return str(content)
    if btype in ("thinking",):
        return str(block.get("thinking", ""))
    return ""


# ---- the prompt as Anthropic's cache sees it

CACHE_TTLS = {"5m": 300.0, "1h": 3600.0}
MAX_BREAKPOINTS = 4
# A breakpoint finds an entry at its own block boundary or at one of the 20 boundaries
# before it; an older entry is out of reach (Anthropic's lookback window).
LOOKBACK_BLOCKS = 20


@dataclass(frozen=True, slots=True)
class Prompt:
    """A request's prompt: ordered blocks (tools, system, then every message's content)
    reduced to what billing needs.

    prefix_tokens[i] is the size of blocks 0..i.  It is taken on the cumulative character
    count, so per-block shares add up exactly to ``total`` and a prefix always costs the
    same whatever follows it.
    """

    prefix_tokens: list[int]
    idents: list[str]                   # canonical text of each block, cache_control left out
    breakpoints: list[tuple[int, str]]  # (block index, ttl), in prompt order
    total: int

    def tokens_before(self, end: int) -> int:
        """Tokens of blocks 0..end (0 when end is -1: the empty prefix)."""
        return self.prefix_tokens[end] if end >= 0 else 0

    def prefix_keys(self, model: str, positions: set[int]) -> dict[int, str]:
        """Hash of the prefix ending at each wanted block boundary (model included: caches
        are per model).  One running hash over the blocks; digests only where asked."""
        keys: dict[int, str] = {}
        if not positions:
            return keys
        last = max(positions)
        h = hashlib.sha256(model.encode())
        for i in range(last + 1):
            h.update(b"\x00")
            h.update(self.idents[i].encode())
            if i in positions:
                keys[i] = h.hexdigest()
        return keys


def _canonical(block: Any, role: str) -> str:
    """What makes two blocks "the same" for the cache: the block minus cache_control, so
    moving a breakpoint between turns does not change the prefix.  A string content is
    the shorthand of one text block and hashes like it."""
    if isinstance(block, dict):
        block = {k: v for k, v in block.items() if k != "cache_control"}
    elif isinstance(block, str):
        block = {"type": "text", "text": block}
    return role + "\x1f" + json.dumps(block, sort_keys=True, separators=(",", ":"))


def _raw_blocks(body: dict) -> list[tuple[str, str, int, Any]]:
    """(where, ident, characters, raw cache_control) for every block, in prompt order."""
    out: list[tuple[str, str, int, Any]] = []
    tools = body.get("tools")
    if isinstance(tools, list):
        for i, tool in enumerate(tools):
            if isinstance(tool, dict):
                t = {k: v for k, v in tool.items() if k != "cache_control"}
                text = json.dumps(t, sort_keys=True)
                out.append((f"tools.{i}", "tool\x1f" + text, text_units(text), tool.get("cache_control")))
    system = body.get("system")
    if isinstance(system, str):
        out.append(("system", _canonical(system, "system"), text_units(system), None))
    elif isinstance(system, list):
        for i, block in enumerate(system):
            cc = block.get("cache_control") if isinstance(block, dict) else None
            out.append((f"system.{i}", _canonical(block, "system"), text_units(_block_text(block)), cc))
    for m, msg in enumerate(body.get("messages") or ()):
        if not isinstance(msg, dict):
            continue
        role = str(msg.get("role"))
        content = msg.get("content")
        if isinstance(content, str):
            out.append((f"messages.{m}.content", _canonical(content, role), text_units(content), None))
        elif isinstance(content, list):
            for i, block in enumerate(content):
                cc = block.get("cache_control") if isinstance(block, dict) else None
                out.append((f"messages.{m}.content.{i}", _canonical(block, role), text_units(_block_text(block)), cc))
    return out


def _cache_ttl(cc: Any, where: str) -> tuple[str | None, str | None]:
    """(ttl, problem) of one cache_control value; (None, None) when there is none."""
    if cc is None:
        return None, None
    field_name = f"{where}.cache_control" if where else "cache_control"
    if not isinstance(cc, dict) or cc.get("type") != "ephemeral":
        return None, f"{field_name}.type: Input should be 'ephemeral'"
    ttl = cc.get("ttl")
    if ttl is None:
        return "5m", None
    if ttl not in CACHE_TTLS:
        return None, f"{field_name}.ttl: Input should be '5m' or '1h'"
    return ttl, None


def parse_prompt(body: dict) -> tuple[Prompt | None, str | None]:
    """The prompt and its breakpoints, or the 400 message the real API would give."""
    raw = _raw_blocks(body)
    marks: list[tuple[int, str]] = []
    for i, (where, _ident, _chars, cc) in enumerate(raw):
        ttl, problem = _cache_ttl(cc, where)
        if problem:
            return None, problem
        if ttl is not None:
            marks.append((i, ttl))
    # Automatic caching: a top-level cache_control takes one of the four slots and puts a
    # breakpoint on the last block.  When that block has its own, they are one breakpoint
    # (the block's ttl wins) but both count towards the limit.
    found = len(marks)
    top_ttl, problem = _cache_ttl(body.get("cache_control"), "")
    if problem:
        return None, problem
    if top_ttl is not None:
        found += 1
        if raw and not (marks and marks[-1][0] == len(raw) - 1):
            marks.append((len(raw) - 1, top_ttl))
    if found > MAX_BREAKPOINTS:
        return None, f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {found}."
    seen_5m = False
    for _i, ttl in marks:
        if ttl == "1h" and seen_5m:
            return None, ("A ttl='1h' cache_control block must not come after a ttl='5m' cache_control "
                          "block. Note that blocks are processed in the following order: "
                          "`tools`, `system`, `messages`.")
        seen_5m = seen_5m or ttl == "5m"
    units = 0
    hundredths = strict.tokenizer_hundredths(str(body.get("model")))
    prefix_tokens: list[int] = []
    for _where, _ident, n, _cc in raw:
        units += n
        prefix_tokens.append(approx_tokens(units, hundredths))
    prompt = Prompt(
        prefix_tokens=prefix_tokens,
        idents=[ident for _w, ident, _n, _cc in raw],
        breakpoints=marks,
        total=prefix_tokens[-1] if prefix_tokens else 0,
    )
    return prompt, None


def last_user_text(body: dict) -> str:
    for msg in reversed(body.get("messages") or ()):
        if isinstance(msg, dict) and msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(_block_text(b) for b in content)
            return ""
    return ""


def all_user_text(body: dict) -> str:
    parts = []
    for msg in body.get("messages") or ():
        if isinstance(msg, dict) and msg.get("role") == "user":
            content = msg.get("content")
            parts.append(content if isinstance(content, str) else "".join(_block_text(b) for b in content) if isinstance(content, list) else "")
    return "\n".join(parts)


def error_body(etype: str, message: str | None = None) -> dict:
    return {"type": "error", "error": {"type": etype, "message": message or ERROR_MESSAGES.get(etype, etype)}}


def error_response(status: int, etype: str | None = None, message: str | None = None,
                   headers: dict | None = None) -> web.Response:
    etype = etype or ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
    hdrs = {"request-id": "req_fake_" + uuid.uuid4().hex[:24]}
    if headers:
        hdrs.update(headers)
    return web.json_response(error_body(etype, message), status=status, headers=hdrs)


def sse_frame(event: str, data: dict) -> bytes:
    return ("event: " + event + "\ndata: " + json.dumps(data, separators=(",", ":")) + "\n\n").encode()


_DELTA_PREFIX = '{"type":"content_block_delta","index":%d,"delta":{"type":"text_delta","text":'
_DELTA_EVENT = "event: content_block_delta\ndata: "


def delta_frame(text: str, index: int = 0) -> bytes:
    return (_DELTA_EVENT + _DELTA_PREFIX % index + json.dumps(text) + "}}\n\n").encode()


# Built at send time for `stamp` replies: only a float format per delta.
_STAMP_FRAMES = [(_DELTA_EVENT + _DELTA_PREFIX % i + '"<t:%.6f> "}}\n\n').encode() for i in (0, 1)]

PING_FRAME = sse_frame("ping", {"type": "ping"})
# Per block index: the text block is 0, or 1 after a thinking block.
BLOCK_START_FRAMES = [sse_frame(
    "content_block_start", {"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}
) for i in (0, 1)]
BLOCK_STOP_FRAMES = [sse_frame("content_block_stop", {"type": "content_block_stop", "index": i}) for i in (0, 1)]


def thinking_frames(thinking: strict.Thinking) -> list[bytes]:
    """The thinking block at index 0: its summary as thinking deltas (when shown), then its
    signature, as the API streams it."""
    frames = [sse_frame("content_block_start", {
        "type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""},
    })]
    for piece in split_deltas(thinking.text):
        frames.append(sse_frame("content_block_delta", {
            "type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": piece},
        }))
    frames.append(sse_frame("content_block_delta", {
        "type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": thinking.signature},
    }))
    frames.append(sse_frame("content_block_stop", {"type": "content_block_stop", "index": 0}))
    return frames


MESSAGE_STOP_FRAME = sse_frame("message_stop", {"type": "message_stop"})
ERROR_EVENT_FRAME = sse_frame("error", error_body("overloaded_error", "Overloaded"))


# --------------------------------------------------------------------------- state


@dataclass
class Scripted:
    reply: dict
    match: str | None
    remaining: int


@dataclass(slots=True)
class CacheEntry:
    tokens: int
    ttl_seconds: float
    expires_at: float


CacheKey = tuple[str, str]  # (model, prefix hash)


@dataclass
class FakeState:
    default_tps: float = 40.0
    default_first_byte_delay: float = 0.0
    min_cache_tokens: int = 0  # the build_app default; /_fake/config changes the live values
    queue: list[Scripted] = field(default_factory=list)
    requests: collections.deque = field(default_factory=lambda: collections.deque(maxlen=REQUEST_LOG_CAP))
    cache: dict[CacheKey, CacheEntry] = field(default_factory=dict)
    cache_min_default: int = 0
    cache_min_by_model: dict[str, int] = field(default_factory=dict)
    # Context windows set by tests (POST /_fake/config); else the catalogue's, for its models.
    context_window_by_model: dict[str, int] = field(default_factory=dict)
    # Added to the wall clock so tests can expire cache entries without waiting.
    clock_offset: float = 0.0
    stats: dict[str, int] = field(default_factory=dict)
    cache_stats: dict[str, int] = field(default_factory=dict)
    _purge_at: int = 1024

    def __post_init__(self) -> None:
        self.cache_min_default = self.min_cache_tokens
        self.reset_stats()

    def reset_stats(self) -> None:
        self.stats = {
            "requests": 0,            # POST /v1/messages received (incl. rejected ones)
            "count_tokens": 0,        # POST /v1/messages/count_tokens received
            "messages_completed": 0,  # non-streaming replies sent
            "errors_returned": 0,     # HTTP error statuses sent (scripted or validation)
            "streams_started": 0,
            "streams_completed": 0,   # reached message_stop
            "streams_cut": 0,         # cut on purpose (cut_after)
            "streams_error_event": 0, # ended with an `event: error` frame
            "streams_disconnected": 0,  # the client went away mid-stream
            "active_streams": 0,
            "deltas_sent": 0,
        }
        self.cache_stats = {
            "reads": 0,           # requests that read a cached prefix
            "writes": 0,          # requests that wrote at least one cache entry
            "read_tokens": 0,
            "written_tokens": 0,
        }

    def reset(self) -> None:
        self.queue.clear()
        self.requests.clear()
        self.cache.clear()
        self.cache_min_default = self.min_cache_tokens
        self.cache_min_by_model.clear()
        self.context_window_by_model.clear()
        self.clock_offset = 0.0
        self.reset_stats()

    def now(self) -> float:
        return time.time() + self.clock_offset

    def min_cache_tokens_for(self, model: str) -> int:
        return self.cache_min_by_model.get(model, self.cache_min_default)

    def context_window_for(self, model: str) -> int | None:
        if model in self.context_window_by_model:
            return self.context_window_by_model[model]
        limits = strict.model_limits(model)
        return limits["context_window"] if limits else None

    def take_reply(self, text: str, every_user_turn: str = "") -> dict | None:
        """The first queued reply whose `match` is in the last user turn (or, for a reply with
        `"match_in": "all_user_turns"`, in any user turn: a Continue ends with a short request
        to carry on, not with the person's message)."""
        for i, item in enumerate(self.queue):
            where = every_user_turn if item.reply.get("match_in") == "all_user_turns" else text
            if item.match is None or item.match in where:
                item.remaining -= 1
                if item.remaining <= 0:
                    del self.queue[i]
                return item.reply
        return None

    # ---- prompt caching, billed the way Anthropic bills it

    def _live(self, key: CacheKey, now: float) -> CacheEntry | None:
        entry = self.cache.get(key)
        if entry is not None and entry.expires_at <= now:
            del self.cache[key]
            return None
        return entry

    def purge_expired(self) -> None:
        now = self.now()
        for key in [k for k, e in self.cache.items() if e.expires_at <= now]:
            del self.cache[key]

    def usage_for(self, prompt: Prompt, model: str) -> dict:
        """Input-side usage of one request; reads and writes the cache as it goes.

        Read: every breakpoint looks for the longest live entry at its own boundary or up
        to LOOKBACK_BLOCKS boundaries before it; each hit is refreshed, and the longest
        one is the read prefix.  Write: each breakpoint past the covered prefix (read or
        just written) whose prefix reaches the model's minimum stores an entry and bills
        the tokens since the covered prefix at its own ttl.  What follows the last
        covered block is plain input, so input + read + written == prompt.total.
        """
        now = self.now()
        wanted: set[int] = set()
        for bp, _ttl in prompt.breakpoints:
            wanted.update(range(max(0, bp - LOOKBACK_BLOCKS), bp + 1))
        keys = prompt.prefix_keys(model, wanted)

        covered = -1  # last block index whose tokens are read from the cache
        for bp, _ttl in reversed(prompt.breakpoints):
            for i in range(bp, max(-1, bp - LOOKBACK_BLOCKS - 1), -1):
                entry = self._live((model, keys[i]), now)
                if entry is not None:
                    entry.expires_at = now + entry.ttl_seconds
                    covered = max(covered, i)
                    break
        read = prompt.tokens_before(covered)

        minimum = self.min_cache_tokens_for(model)
        written = {"5m": 0, "1h": 0}
        for bp, ttl in prompt.breakpoints:
            tokens = prompt.prefix_tokens[bp]
            if bp <= covered or tokens <= 0 or tokens < minimum:
                continue  # already cached, or too short to cache: silently not written
            written[ttl] += tokens - prompt.tokens_before(covered)
            seconds = CACHE_TTLS[ttl]
            self.cache[(model, keys[bp])] = CacheEntry(tokens=tokens, ttl_seconds=seconds, expires_at=now + seconds)
            covered = bp
        created = written["5m"] + written["1h"]
        self._count_cache_use(read, created)
        return {
            "input_tokens": prompt.total - prompt.tokens_before(covered),
            "cache_creation_input_tokens": created,
            "cache_read_input_tokens": read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": written["5m"],
                "ephemeral_1h_input_tokens": written["1h"],
            },
        }

    def _count_cache_use(self, read: int, created: int) -> None:
        cs = self.cache_stats
        if read:
            cs["reads"] += 1
            cs["read_tokens"] += read
        if created:
            cs["writes"] += 1
            cs["written_tokens"] += created
            # Entries nobody asks for again would pile up in a long-running fake.
            if len(self.cache) >= self._purge_at:
                self.purge_expired()
                self._purge_at = 2 * len(self.cache) + 1024


STATE_KEY = web.AppKey("fakeanthropic_state", FakeState)


# --------------------------------------------------------------------------- auth / validation


def _auth_kind(request: web.Request) -> str | None:
    if request.headers.get("x-api-key", "").strip():
        return "x-api-key"
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return "bearer"
    return None


def _account(request: web.Request) -> str:
    """Who the key belongs to: thinking signatures are bound to it."""
    key = request.headers.get("x-api-key", "").strip() or request.headers.get("authorization", "")[7:].strip()
    return strict.account_of(key)


async def _read_json(request: web.Request) -> tuple[Any, web.Response | None]:
    try:
        return await request.json(), None
    except (ValueError, UnicodeDecodeError):
        return None, error_response(400, "invalid_request_error", "Request body is not valid JSON")


def _validate(body: Any, need_max_tokens: bool = True) -> str | None:
    if not isinstance(body, dict):
        return "Request body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required (string)"
    if need_max_tokens:
        mt = body.get("max_tokens")
        if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
            return "max_tokens: Field required (integer >= 1)"
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return "messages: Field required (non-empty list)"
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            return f"messages.{i}: each message needs role 'user' or 'assistant'"
        if not isinstance(m.get("content"), (str, list)):
            return f"messages.{i}.content: must be a string or a list of blocks"
    system = body.get("system")
    if system is not None and not isinstance(system, (str, list)):
        return "system: must be a string or a list of text blocks"
    return None


def _scripted_error(reply: dict) -> web.Response:
    status = int(reply["status"])
    headers: dict[str, str] = {}
    if status == 429:
        ms = reply.get("retry_after_ms", 10)
        headers["retry-after-ms"] = str(ms)
        headers["retry-after"] = str(max(0, math.ceil(float(ms) / 1000)))
    elif "retry_after_ms" in reply:
        ms = reply["retry_after_ms"]
        headers["retry-after-ms"] = str(ms)
        headers["retry-after"] = str(max(0, math.ceil(float(ms) / 1000)))
    if "should_retry" in reply and reply["should_retry"] is not None:
        headers["x-should-retry"] = "true" if reply["should_retry"] else "false"
    return error_response(status, reply.get("error_type"), reply.get("message"), headers)


def _interval(reply: dict, default_tps: float, explicit_only: bool = False) -> float:
    """Seconds between deltas (0 = no pacing)."""
    if reply.get("delta_interval_ms") is not None:
        return max(0.0, float(reply["delta_interval_ms"]) / 1000.0)
    tps = reply.get("tps")
    if tps is None:
        if explicit_only:
            return 0.0
        tps = default_tps
    tps = float(tps)
    return 1.0 / tps if tps > 0 else 0.0


# --------------------------------------------------------------------------- handlers


async def handle_messages(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    state.stats["requests"] += 1
    auth = _auth_kind(request)
    body, bad = await _read_json(request)
    state.requests.append({
        "body": body,
        "headers": {
            "anthropic-version": request.headers.get("anthropic-version"),
            "anthropic-beta": request.headers.get("anthropic-beta"),
            "user-agent": request.headers.get("user-agent"),
        },
        "auth": auth is not None,
        "auth_kind": auth,
        "time": time.time(),
    })
    if auth is None:
        state.stats["errors_returned"] += 1
        return error_response(401, "authentication_error", "x-api-key header is required")
    if bad is not None:
        state.stats["errors_returned"] += 1
        return bad
    account = _account(request)
    problem = _validate(body) or strict.check(body, account=account)
    prompt: Prompt | None = None
    if not problem:
        prompt, problem = parse_prompt(body)
    if not problem and prompt is not None:
        window = state.context_window_for(body["model"])
        if window is not None and prompt.total > window:
            problem = strict.PROMPT_TOO_LONG.format(prompt.total, window)
    if problem or prompt is None:
        state.stats["errors_returned"] += 1
        return error_response(400, "invalid_request_error", problem)

    user_text = last_user_text(body)
    reply = state.take_reply(user_text, all_user_text(body)) or {}

    delay = reply.get("first_byte_delay_ms")
    delay = float(delay) / 1000.0 if delay is not None else state.default_first_byte_delay
    if delay > 0:
        await asyncio.sleep(delay)

    if reply.get("status") is not None:
        state.stats["errors_returned"] += 1
        return _scripted_error(reply)

    model: str = body["model"]
    max_tokens: int = body["max_tokens"]
    usage = state.usage_for(prompt, model)
    override = reply.get("usage") or {}
    msg_id = "msg_fake_" + uuid.uuid4().hex[:24]
    req_id = "req_fake_" + uuid.uuid4().hex[:24]
    # Thinking comes first and counts toward max_tokens: what is left is the text's budget.
    thinking = strict.thinking_for(body, reply, account=account, count_tokens=lambda t: len(split_deltas(t)))
    text_budget = max(0, max_tokens - thinking.tokens)

    if body.get("stream"):
        return await _stream(request, state, reply, model, max_tokens, usage, override, msg_id, req_id, user_text, thinking)

    # ---- non-streaming
    if reply.get("stamp"):
        n = min(int(reply.get("deltas", STAMP_DELTAS_DEFAULT)), text_budget)
        deltas = ["<t:%.6f> " % time.time()] * n
        stop_reason = "end_turn"
    else:
        text = reply.get("text")
        deltas = split_deltas(demo_reply(user_text) if text is None else str(text))
        stop_reason = "end_turn"
        if len(deltas) > text_budget:
            deltas = deltas[:text_budget]
            stop_reason = "max_tokens"
    if reply.get("cut_after") is not None:
        # No response at all: the connection just drops.
        state.stats["streams_cut"] += 1
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=500)
    if reply.get("error_event_after") is not None:
        # Non-streaming stand-in for a generation failing midway.
        state.stats["errors_returned"] += 1
        return error_response(529, "overloaded_error", "Overloaded")
    interval = _interval(reply, state.default_tps, explicit_only=True)
    if interval > 0 and deltas:
        await asyncio.sleep(interval * len(deltas))
    usage = {**usage, "output_tokens": min(max_tokens, thinking.tokens) + len(deltas), **override}
    state.stats["messages_completed"] += 1
    content: list[dict] = []
    if thinking.tokens:
        content.append({"type": "thinking", "thinking": thinking.text, "signature": thinking.signature})
    if text_budget > 0:  # thinking that used all of max_tokens leaves no text block at all
        content.append({"type": "text", "text": "".join(deltas)})
    return web.json_response(
        {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": reply.get("stop_reason", stop_reason),
            "stop_sequence": None,
            "usage": usage,
        },
        headers={"request-id": req_id},
    )


async def _stream(request: web.Request, state: FakeState, reply: dict, model: str, max_tokens: int,
                  usage: dict, override: dict, msg_id: str, req_id: str, user_text: str,
                  thinking: strict.Thinking = strict.NO_THINKING) -> web.StreamResponse:
    stats = state.stats
    stamp = bool(reply.get("stamp"))
    # The text block follows the thinking block, if any; thinking uses max_tokens first.
    index = 1 if thinking.tokens else 0
    budget = max(0, max_tokens - thinking.tokens)
    if stamp:
        n = int(reply.get("deltas", STAMP_DELTAS_DEFAULT))
        frames: list[bytes] | None = None
    else:
        text = reply.get("text")
        frames = [delta_frame(d, index) for d in split_deltas(demo_reply(user_text) if text is None else str(text))]
        n = len(frames)
    stop_reason = "end_turn"
    if n > budget:
        n = budget
        stop_reason = "max_tokens"
        if frames is not None:
            del frames[n:]
    # How the stream ends: "complete", "cut" (cut_after) or "error" (error_event_after);
    # when both are given the earlier one wins (a tie goes to the cut).
    ending, stop_at = "complete", n
    if reply.get("error_event_after") is not None:
        ending, stop_at = "error", min(n, max(0, int(reply["error_event_after"])))
    if reply.get("cut_after") is not None:
        cut_at = min(n, max(0, int(reply["cut_after"])))
        if ending == "complete" or cut_at <= stop_at:
            ending, stop_at = "cut", cut_at
    interval = _interval(reply, state.default_tps)

    start_usage = {**usage, "output_tokens": 1}
    start_usage.update({k: v for k, v in override.items() if k != "output_tokens"})
    head = [
        sse_frame("message_start", {
            "type": "message_start",
            "message": {
                "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": None, "stop_sequence": None, "usage": start_usage,
            },
        }),
        *(thinking_frames(thinking) if thinking.tokens else ()),
        *((BLOCK_START_FRAMES[index],) if budget else ()),
        PING_FRAME,
    ]
    delta_usage = {"output_tokens": min(max_tokens, thinking.tokens) + n}
    delta_usage.update(override)
    tail = [
        *((BLOCK_STOP_FRAMES[index],) if budget else ()),
        sse_frame("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": reply.get("stop_reason", stop_reason), "stop_sequence": None},
            "usage": delta_usage,
        }),
        MESSAGE_STOP_FRAME,
    ]

    resp = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "request-id": req_id,
        },
    )
    stats["streams_started"] += 1
    stats["active_streams"] += 1
    sent = 0
    try:
        await resp.prepare(request)
        write = resp.write
        for f in head:
            await write(f)
        loop = asyncio.get_running_loop()
        sleep = asyncio.sleep
        next_t = loop.time()
        if stamp:
            fmt = _STAMP_FRAMES[index]
            now = time.time
            for i in range(stop_at):
                if i and interval > 0:
                    next_t += interval
                    d = next_t - loop.time()
                    if d > 0:
                        await sleep(d)
                await write(fmt % now())
                sent += 1
        else:
            assert frames is not None
            stall_after = reply.get("stall_after")
            for i in range(stop_at):
                if i and interval > 0:
                    next_t += interval
                    d = next_t - loop.time()
                    if d > 0:
                        await sleep(d)
                if i == stall_after:
                    # Nothing at all for a while, not even a ping: a stalled upstream.
                    await sleep(float(reply.get("stall_ms", 0)) / 1000.0)
                    next_t = loop.time()
                await write(frames[i])
                sent += 1

        if ending == "cut":
            # Drop the connection mid-body: buffered deltas are flushed, then the
            # socket closes without the terminating chunk.
            stats["streams_cut"] += 1
            if request.transport is not None:
                request.transport.close()
            return resp
        if ending == "error":
            await write(ERROR_EVENT_FRAME)
            await resp.write_eof()
            stats["streams_error_event"] += 1
            return resp
        for f in tail:
            await write(f)
        await resp.write_eof()
        stats["streams_completed"] += 1
        return resp
    except (ConnectionError, asyncio.CancelledError) as exc:
        # Client went away (or server shutting down): quietly stop.
        stats["streams_disconnected"] += 1
        if isinstance(exc, asyncio.CancelledError):
            raise
        return resp
    finally:
        stats["active_streams"] -= 1
        stats["deltas_sent"] += sent


async def handle_count_tokens(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    state.stats["count_tokens"] += 1
    if _auth_kind(request) is None:
        return error_response(401, "authentication_error", "x-api-key header is required")
    body, bad = await _read_json(request)
    if bad is not None:
        return bad
    problem = _validate(body, need_max_tokens=False)
    prompt: Prompt | None = None
    if not problem:
        prompt, problem = parse_prompt(body)
    if problem or prompt is None:
        return error_response(400, "invalid_request_error", problem)
    # The same per-block sum that usage_for bills: input + read + written == this.
    return web.json_response({"input_tokens": prompt.total})


# ---- test controls


async def handle_script(request: web.Request) -> web.Response:
    """Queue replies. Each is routed by `match` (a substring of the last user turn; of any user
    turn with `"match_in": "all_user_turns"`). Beside the text, timing and failure fields read in
    the handlers: `"thinking"` (tokens, or the thinking text; false for none) and `"display"`
    ("summarized" shows the thinking text) shape the thinking block a model that thinks sends
    first (strict.thinking_for)."""
    state = request.app[STATE_KEY]
    body, bad = await _read_json(request)
    if bad is not None:
        return bad
    if isinstance(body, list):
        body = {"replies": body}
    if not isinstance(body, dict) or not isinstance(body.get("replies", []), list):
        return error_response(400, "invalid_request_error", 'expected {"replies": [...], "match": "..."}')
    match = body.get("match")
    if match is not None and not isinstance(match, str):
        return error_response(400, "invalid_request_error", "match must be a string or null")
    replies = body.get("replies", [])
    for r in replies:
        if not isinstance(r, dict):
            return error_response(400, "invalid_request_error", "each reply must be an object")
    for r in replies:
        state.queue.append(Scripted(reply=r, match=r.get("match", match), remaining=max(1, int(r.get("repeat", 1)))))
    return web.json_response({"queued": len(replies), "pending": len(state.queue)})


async def handle_reset(request: web.Request) -> web.Response:
    request.app[STATE_KEY].reset()
    return web.json_response({"reset": True})


async def handle_requests(request: web.Request) -> web.Response:
    return web.json_response(list(request.app[STATE_KEY].requests))


async def handle_stats(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    state.purge_expired()
    return web.json_response({
        **state.stats,
        "queued": len(state.queue),
        "cache": {"entries": len(state.cache), **state.cache_stats},
    })


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


async def handle_clock(request: web.Request) -> web.Response:
    """{"advance": seconds}: move the fake's clock forward (cache expiry only)."""
    state = request.app[STATE_KEY]
    body, bad = await _read_json(request)
    if bad is not None:
        return bad
    advance = body.get("advance", 0) if isinstance(body, dict) else None
    if not _is_number(advance):
        return error_response(400, "invalid_request_error", 'expected {"advance": seconds}')
    state.clock_offset += float(advance)
    return web.json_response({"offset": state.clock_offset, "now": state.now()})


def _config_view(state: FakeState) -> dict:
    return {"default_min_cache_tokens": state.cache_min_default,
            "min_cache_tokens": dict(state.cache_min_by_model),
            "context_window": dict(state.context_window_by_model)}


async def handle_config(request: web.Request) -> web.Response:
    """GET: the live settings.  POST {"min_cache_tokens": {model: n | null},
    "default_min_cache_tokens": n, "context_window": {model: n | null}}: per-model minimum
    cacheable prefix (null drops a model's override) and the default for other models; per-model
    context window (a longer prompt is a 400, as on the real API; the catalogue's window
    otherwise).  /_fake/reset restores them all."""
    state = request.app[STATE_KEY]
    if request.method == "GET":
        return web.json_response(_config_view(state))
    body, bad = await _read_json(request)
    if bad is not None:
        return bad
    if not isinstance(body, dict):
        return error_response(400, "invalid_request_error", "expected a JSON object")
    per_model = body.get("min_cache_tokens", {})
    default = body.get("default_min_cache_tokens")
    windows = body.get("context_window", {})

    def per_model_ints(value: Any) -> bool:
        return isinstance(value, dict) and all(
            isinstance(m, str) and (v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0))
            for m, v in value.items()
        )

    if not per_model_ints(per_model):
        return error_response(400, "invalid_request_error", "min_cache_tokens: expected {model: integer >= 0 or null}")
    if not per_model_ints(windows):
        return error_response(400, "invalid_request_error", "context_window: expected {model: integer >= 0 or null}")
    if default is not None and (not isinstance(default, int) or isinstance(default, bool) or default < 0):
        return error_response(400, "invalid_request_error", "default_min_cache_tokens: expected an integer >= 0")
    for model, value in per_model.items():
        if value is None:
            state.cache_min_by_model.pop(model, None)
        else:
            state.cache_min_by_model[model] = value
    if default is not None:
        state.cache_min_default = default
    for model, value in windows.items():
        if value is None:
            state.context_window_by_model.pop(model, None)
        else:
            state.context_window_by_model[model] = value
    return web.json_response(_config_view(state))


async def handle_health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def build_app(*, default_tps: float = 40.0, default_first_byte_delay: float = 0.0,
              min_cache_tokens: int = 0) -> web.Application:
    """The fake's aiohttp application.

    default_tps: text deltas per second when a reply does not say (<= 0: no pacing).
    default_first_byte_delay: seconds to wait before the response starts.
    min_cache_tokens: smallest prefix (in fake tokens) that prompt caching applies to, for
        every model without an override (POST /_fake/config sets overrides).
    """
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE_KEY] = FakeState(
        default_tps=float(default_tps),
        default_first_byte_delay=float(default_first_byte_delay),
        min_cache_tokens=int(min_cache_tokens),
    )
    app.router.add_post("/v1/messages", handle_messages)
    app.router.add_post("/v1/messages/count_tokens", handle_count_tokens)
    app.router.add_post("/_fake/script", handle_script)
    app.router.add_post("/_fake/reset", handle_reset)
    app.router.add_get("/_fake/requests", handle_requests)
    app.router.add_get("/_fake/stats", handle_stats)
    app.router.add_post("/_fake/clock", handle_clock)
    app.router.add_get("/_fake/config", handle_config)
    app.router.add_post("/_fake/config", handle_config)
    app.router.add_get("/_fake/health", handle_health)
    return app
