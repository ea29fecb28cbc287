"""A local fake of the Anthropic Messages API, built on aiohttp.web.

The real ``anthropic`` SDK is pointed at it with ``base_url``.  Tests script the
replies through the ``/_fake/*`` control endpoints; with nothing scripted every
request gets the offline demo answer (see ``demo.py``).

Cheap per event: the SSE frames of a reply are built as bytes before the pacing
loop, which then only sleeps and calls ``resp.write()`` once per frame.
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


def approx_tokens(n_chars: int) -> int:
    """The fake's tokenizer: about four characters per token."""
    return math.ceil(n_chars / 4) if n_chars > 0 else 0


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


def prompt_segments(body: dict) -> list[tuple[str, bool]]:
    """The prompt as ordered (text, carries_cache_control) segments:
    tools, then system, then every message's content blocks."""
    segs: list[tuple[str, bool]] = []
    tools = body.get("tools")
    if isinstance(tools, list):
        for tool in tools:
            if isinstance(tool, dict):
                t = {k: v for k, v in tool.items() if k != "cache_control"}
                segs.append((json.dumps(t, sort_keys=True), "cache_control" in tool))
    system = body.get("system")
    if isinstance(system, str):
        segs.append((system, False))
    elif isinstance(system, list):
        for block in system:
            segs.append((_block_text(block), isinstance(block, dict) and "cache_control" in block))
    for msg in body.get("messages") or ():
        if not isinstance(msg, dict):
            continue
        content = msg.get("content")
        if isinstance(content, str):
            segs.append((content, False))
        elif isinstance(content, list):
            for block in content:
                segs.append((_block_text(block), isinstance(block, dict) and "cache_control" in block))
    return segs


def count_input_tokens(body: dict) -> int:
    return approx_tokens(sum(len(t) for t, _ in prompt_segments(body)))


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


_DELTA_PREFIX = '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":'
_DELTA_EVENT = "event: content_block_delta\ndata: "


def delta_frame(text: str) -> bytes:
    return (_DELTA_EVENT + _DELTA_PREFIX + json.dumps(text) + "}}\n\n").encode()


# Built at send time for `stamp` replies: only a float format per delta.
_STAMP_FRAME = (_DELTA_EVENT + _DELTA_PREFIX + '"<t:%.6f> "}}\n\n').encode()

PING_FRAME = sse_frame("ping", {"type": "ping"})
BLOCK_START_FRAME = sse_frame(
    "content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
)
BLOCK_STOP_FRAME = sse_frame("content_block_stop", {"type": "content_block_stop", "index": 0})
MESSAGE_STOP_FRAME = sse_frame("message_stop", {"type": "message_stop"})
ERROR_EVENT_FRAME = sse_frame("error", error_body("overloaded_error", "Overloaded"))


# --------------------------------------------------------------------------- state


@dataclass
class Scripted:
    reply: dict
    match: str | None
    remaining: int


@dataclass
class FakeState:
    default_tps: float = 40.0
    default_first_byte_delay: float = 0.0
    min_cache_tokens: int = 0
    queue: list[Scripted] = field(default_factory=list)
    requests: collections.deque = field(default_factory=lambda: collections.deque(maxlen=REQUEST_LOG_CAP))
    cache: set[str] = field(default_factory=set)
    stats: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
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

    def reset(self) -> None:
        self.queue.clear()
        self.requests.clear()
        self.cache.clear()
        self.reset_stats()

    def take_reply(self, text: str) -> dict | None:
        for i, item in enumerate(self.queue):
            if item.match is None or item.match in text:
                item.remaining -= 1
                if item.remaining <= 0:
                    del self.queue[i]
                return item.reply
        return None

    def usage_for(self, body: dict, model: str) -> dict:
        """Input-side usage, simulating prompt caching."""
        segs = prompt_segments(body)
        total = approx_tokens(sum(len(t) for t, _ in segs))
        last_cc = -1
        if "cache_control" in body and body.get("cache_control") is not None:
            last_cc = len(segs) - 1
        else:
            for i in range(len(segs) - 1, -1, -1):
                if segs[i][1]:
                    last_cc = i
                    break
        created = read = 0
        if last_cc >= 0:
            prefix = segs[: last_cc + 1]
            prefix_tokens = approx_tokens(sum(len(t) for t, _ in prefix))
            if prefix_tokens > 0 and prefix_tokens >= self.min_cache_tokens:
                h = hashlib.sha256(model.encode())
                for t, _ in prefix:
                    h.update(b"\x00")
                    h.update(t.encode())
                key = h.hexdigest()
                if key in self.cache:
                    read = prefix_tokens
                else:
                    created = prefix_tokens
                    self.cache.add(key)
        return {
            "input_tokens": max(0, total - created - read),
            "cache_creation_input_tokens": created,
            "cache_read_input_tokens": read,
        }


STATE_KEY = web.AppKey("fakeanthropic_state", FakeState)


# --------------------------------------------------------------------------- auth / validation


def _auth_kind(request: web.Request) -> str | None:
    if request.headers.get("x-api-key", "").strip():
        return "x-api-key"
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return "bearer"
    return None


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
    problem = _validate(body)
    if problem:
        state.stats["errors_returned"] += 1
        return error_response(400, "invalid_request_error", problem)

    user_text = last_user_text(body)
    reply = state.take_reply(user_text) or {}

    delay = reply.get("first_byte_delay_ms")
    delay = float(delay) / 1000.0 if delay is not None else state.default_first_byte_delay
    if delay > 0:
        await asyncio.sleep(delay)

    if reply.get("status") is not None:
        state.stats["errors_returned"] += 1
        return _scripted_error(reply)

    model: str = body["model"]
    max_tokens: int = body["max_tokens"]
    usage = state.usage_for(body, model)
    override = reply.get("usage") or {}
    msg_id = "msg_fake_" + uuid.uuid4().hex[:24]
    req_id = "req_fake_" + uuid.uuid4().hex[:24]

    if body.get("stream"):
        return await _stream(request, state, reply, model, max_tokens, usage, override, msg_id, req_id, user_text)

    # ---- non-streaming
    if reply.get("stamp"):
        n = min(int(reply.get("deltas", STAMP_DELTAS_DEFAULT)), max_tokens)
        deltas = ["<t:%.6f> " % time.time()] * n
        stop_reason = "end_turn"
    else:
        text = reply.get("text")
        deltas = split_deltas(demo_reply(user_text) if text is None else str(text))
        stop_reason = "end_turn"
        if len(deltas) > max_tokens:
            deltas = deltas[:max_tokens]
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
    usage = {**usage, "output_tokens": len(deltas), **override}
    state.stats["messages_completed"] += 1
    return web.json_response(
        {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": "".join(deltas)}],
            "stop_reason": reply.get("stop_reason", stop_reason),
            "stop_sequence": None,
            "usage": usage,
        },
        headers={"request-id": req_id},
    )


async def _stream(request: web.Request, state: FakeState, reply: dict, model: str, max_tokens: int,
                  usage: dict, override: dict, msg_id: str, req_id: str, user_text: str) -> web.StreamResponse:
    stats = state.stats
    stamp = bool(reply.get("stamp"))
    if stamp:
        n = int(reply.get("deltas", STAMP_DELTAS_DEFAULT))
        frames: list[bytes] | None = None
    else:
        text = reply.get("text")
        frames = [delta_frame(d) for d in split_deltas(demo_reply(user_text) if text is None else str(text))]
        n = len(frames)
    stop_reason = "end_turn"
    if n > max_tokens:
        n = max_tokens
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
        BLOCK_START_FRAME,
        PING_FRAME,
    ]
    delta_usage = {"output_tokens": n}
    delta_usage.update(override)
    tail = [
        BLOCK_STOP_FRAME,
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
            fmt = _STAMP_FRAME
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
            for i in range(stop_at):
                if i and interval > 0:
                    next_t += interval
                    d = next_t - loop.time()
                    if d > 0:
                        await sleep(d)
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
    if problem:
        return error_response(400, "invalid_request_error", problem)
    return web.json_response({"input_tokens": count_input_tokens(body)})


# ---- test controls


async def handle_script(request: web.Request) -> web.Response:
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
    return web.json_response({**state.stats, "queued": len(state.queue)})


async def handle_health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def build_app(*, default_tps: float = 40.0, default_first_byte_delay: float = 0.0,
              min_cache_tokens: int = 0) -> web.Application:
    """The fake's aiohttp application.

    default_tps: text deltas per second when a reply does not say (<= 0: no pacing).
    default_first_byte_delay: seconds to wait before the response starts.
    min_cache_tokens: smallest prefix (in fake tokens) that prompt caching applies to.
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
    app.router.add_get("/_fake/health", handle_health)
    return app
