"""The one module that talks to Anthropic.

Knows nothing about Django models: callers pass plain data and get text, usage and
`LLMError`s back. Clients are built once per process (per event loop for the async one).

The streaming read is deliberately lean. The SDK still builds, authenticates and retries the
request (`with_streaming_response.create(stream=True)`), but the body is read as SSE lines and
only text deltas are decoded: the `messages.stream()` helper builds pydantic objects per event,
which costs ~200 µs of CPU per delta and caps a process near 100 concurrent streams.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2
from django.conf import settings

log = logging.getLogger(__name__)


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    # The 1-hour share of cache_creation_input_tokens (Anthropic reports the split under
    # usage.cache_creation; 1-hour writes are billed at a different rate).
    cache_creation_1h_input_tokens: int = 0

    def update(self, data: dict[str, Any] | None) -> None:
        for key, value in (data or {}).items():
            if key == "cache_creation" and isinstance(value, dict):
                one_hour = value.get("ephemeral_1h_input_tokens")
                if isinstance(one_hour, int):
                    self.cache_creation_1h_input_tokens = one_hour
            elif hasattr(self, key) and isinstance(value, int):
                setattr(self, key, value)

    @property
    def prompt_tokens(self) -> int:
        """Everything the prompt held: cache tokens come on top of input_tokens."""
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens


@dataclass
class StreamResult:
    usage: Usage = field(default_factory=Usage)
    stop_reason: str = ""
    text_deltas: int = 0
    # Data lines read so far, of any event (pings included): a watcher that sees this number
    # stand still knows the stream has stalled (runner).
    events: int = 0


class LLMError(Exception):
    """A failure talking to Claude, with a message fit to show a person.

    `code` is stable (for the UI and tests), `retryable` tells the runner whether trying
    again may help, `retry_after` is the server's hint in seconds when it gave one.
    """

    def __init__(self, code: str, message: str, *, retryable: bool = False, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status

    def __reduce__(self):
        # Picklable (Celery stores a task's exception in its result and retry state).
        return (_llm_error, (self.code, self.message, self.retryable, self.retry_after, self.status))


def _llm_error(code: str, message: str, retryable: bool, retry_after: float | None, status: int | None) -> "LLMError":
    return LLMError(code, message, retryable=retryable, retry_after=retry_after, status=status)


_HUMAN = {
    "rate_limited": "Claude is receiving too many requests right now. Please try again in a moment.",
    "overloaded": "Claude is overloaded right now. Please try again in a moment.",
    "upstream_error": "Claude's service had an internal error. Please try again.",
    "timeout": "Claude took too long to answer. Please try again.",
    "connection": "Could not reach Claude's service. Check the server's network and try again.",
    "stream_cut": "The connection to Claude dropped while the reply was being written.",
    "auth": "The server's Anthropic API key was rejected. Ask an administrator to check it.",
    "permission": "The server's Anthropic account is not allowed to use this model.",
    "invalid_request": "Claude could not process this request. The conversation may be too long for the model.",
    "not_found": "The model for this conversation is not available. Ask an administrator.",
    "too_large": "This conversation is too large to send to Claude.",
    "unknown": "Something went wrong while talking to Claude. Please try again.",
}

_ERROR_TYPE_CODES = {
    "rate_limit_error": "rate_limited",
    "overloaded_error": "overloaded",
    "api_error": "upstream_error",
    "authentication_error": "auth",
    "permission_error": "permission",
    "invalid_request_error": "invalid_request",
    "not_found_error": "not_found",
    "request_too_large": "too_large",
}
_RETRYABLE_CODES = {"rate_limited", "overloaded", "upstream_error", "timeout", "connection", "stream_cut"}


def _error(code: str, *, status: int | None = None, retry_after: float | None = None) -> LLMError:
    return LLMError(code, _HUMAN.get(code, _HUMAN["unknown"]), retryable=code in _RETRYABLE_CODES, retry_after=retry_after, status=status)


def _retry_after(headers: Any) -> float | None:
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000
        if headers.get("retry-after"):
            return float(headers["retry-after"])
    except (TypeError, ValueError):
        return None
    return None


def map_exception(exc: BaseException) -> LLMError:
    """Translate an SDK/transport exception into the project's error type."""
    if isinstance(exc, LLMError):
        return exc
    if isinstance(exc, anthropic.APITimeoutError) or isinstance(exc, httpx2.TimeoutException):
        return _error("timeout")
    if isinstance(exc, anthropic.APIConnectionError) or isinstance(exc, httpx2.TransportError):
        # A transport error after the response started is a cut stream, not a connect failure;
        # the caller knows which and may re-map it.
        return _error("connection")
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        code = _error_code_from_body(exc.body)
        if code is None:
            code = {429: "rate_limited", 529: "overloaded", 401: "auth", 403: "permission", 404: "not_found", 413: "too_large"}.get(status)
        if code is None:
            code = "upstream_error" if status >= 500 else "invalid_request" if status >= 400 else "unknown"
        return _error(code, status=status, retry_after=_retry_after(exc.response.headers))
    log.exception("Unexpected error from the Anthropic client", exc_info=exc)
    return _error("unknown")


def _error_code_from_body(body: object) -> str | None:
    if isinstance(body, dict):
        err = body.get("error") if isinstance(body.get("error"), dict) else body
        if isinstance(err, dict):
            return _ERROR_TYPE_CODES.get(str(err.get("type")))
    return None


# --- Clients, built once ------------------------------------------------------------------

_async_clients: dict[tuple, anthropic.AsyncAnthropic] = {}
_sync_client: anthropic.Anthropic | None = None


def _client_kwargs() -> dict[str, Any]:
    return {
        # The bundled fake accepts any key; a real deployment sets ANTHROPIC_API_KEY.
        "api_key": settings.ANTHROPIC_API_KEY or "offline-demo",
        "base_url": settings.ANTHROPIC_BASE_URL,
        "timeout": anthropic.Timeout(settings.ANTHROPIC_TIMEOUT, connect=settings.ANTHROPIC_CONNECT_TIMEOUT),
        "max_retries": settings.ANTHROPIC_MAX_RETRIES,
    }


def async_client() -> anthropic.AsyncAnthropic:
    """The process's AsyncAnthropic for the running event loop (its pool is loop-bound).

    It never retries by itself: replies are retried by the runner, which bounds the whole wait
    by CHATSITE_RETRY_BUDGET_SECONDS and tells the person while it waits. The SDK's own
    retries honour any `retry-after` without a cap (a 429 asking for 40 s made a reply wait
    two minutes against a 30 s budget, with nothing shown meanwhile).
    """
    loop = asyncio.get_running_loop()
    key = (id(loop), settings.ANTHROPIC_BASE_URL, settings.ANTHROPIC_API_KEY, settings.ANTHROPIC_TIMEOUT)
    client = _async_clients.get(key)
    if client is None:
        client = anthropic.AsyncAnthropic(**{**_client_kwargs(), "max_retries": 0})
        _async_clients.clear()  # an old loop's client is unusable; drop it rather than leak it
        _async_clients[key] = client
    return client


def sync_client() -> anthropic.Anthropic:
    """For Celery tasks and management commands, which are synchronous."""
    global _sync_client
    if _sync_client is None:
        _sync_client = anthropic.Anthropic(**_client_kwargs())
    return _sync_client


def reset_clients() -> None:
    """Forget built clients (tests change ANTHROPIC_BASE_URL between runs)."""
    global _sync_client
    _async_clients.clear()
    _sync_client = None


# --- Calls --------------------------------------------------------------------------------

_TEXT_DELTA = b'"text_delta"'


async def sse_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The non-empty lines of an SSE body, as bytes, from its chunks as they arrive.

    What the SDK's `iter_lines()` gives, without decoding every chunk to text first and
    running httpx's line decoder over it (about 7 % of the loop's CPU per relayed delta): a
    line is only decoded when it is a text delta (json.loads takes bytes). Any of the three
    SSE line ends (LF, CRLF, CR) ends a line; a multi-byte character split between chunks is
    whole again before anything reads it.
    """
    rest = b""
    async for chunk in chunks:
        if b"\r" in chunk:
            # (A CRLF split between two chunks reads as two line ends: the empty line between
            # them is skipped like every other empty line.)
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if rest:
            chunk = rest + chunk
        *lines, rest = chunk.split(b"\n")
        for line in lines:
            if line:
                yield line
    if rest:
        yield rest


async def stream_message(
    *,
    model: str,
    system: str | list[dict[str, Any]] | None,
    messages: list[dict[str, Any]],
    max_tokens: int,
    on_text: Callable[[str], None],
    result: StreamResult | None = None,
    extra: dict[str, Any] | None = None,
) -> StreamResult:
    """Stream one reply, calling `on_text(chunk)` for every text delta as it arrives.

    Raises `LLMError`. `on_text` runs on the event loop for every delta: keep it cheap.
    Pass `result` to keep the usage and delta count seen so far when the stream fails.
    """
    result = result if result is not None else StreamResult()
    kwargs: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": messages, "stream": True}
    if system:
        kwargs["system"] = system
    if extra:
        kwargs.update(extra)
    started = False
    try:
        async with async_client().messages.with_streaming_response.create(**kwargs) as response:
            started = True
            event = b""
            async for line in sse_lines(response.http_response.aiter_bytes()):
                if line.startswith(b"event:"):
                    event = line[6:].strip()
                    continue
                if not line.startswith(b"data:"):
                    continue
                result.events += 1
                if event == b"content_block_delta":
                    if _TEXT_DELTA in line:
                        text = json.loads(line[5:])["delta"]["text"]
                        result.text_deltas += 1
                        on_text(text)
                elif event == b"message_start":
                    result.usage.update(json.loads(line[5:])["message"].get("usage"))
                elif event == b"message_delta":
                    data = json.loads(line[5:])
                    result.usage.update(data.get("usage"))
                    result.stop_reason = (data.get("delta") or {}).get("stop_reason") or result.stop_reason
                elif event == b"error":
                    raise _error(_error_code_from_body(json.loads(line[5:])) or "upstream_error", status=200)
                elif event == b"message_stop":
                    return result
            # The body ended without message_stop: the stream was cut.
            raise _error("stream_cut")
    except LLMError:
        raise
    except (anthropic.APIConnectionError, httpx2.TransportError) as exc:
        if started and not isinstance(exc, (anthropic.APITimeoutError, httpx2.TimeoutException)):
            raise _error("stream_cut") from exc
        raise map_exception(exc) from exc
    except anthropic.APIError as exc:
        raise map_exception(exc) from exc


@dataclass
class Completion:
    """A non-streamed reply's text (its text blocks), usage and stop reason. The text can be
    empty: today's models think first, and thinking that uses all of max_tokens leaves none."""

    text: str
    usage: Usage
    stop_reason: str


def complete(
    *, model: str, system: str | list[dict[str, Any]] | None, messages: list[dict[str, Any]], max_tokens: int,
    options: dict[str, Any] | None = None,
) -> Completion:
    """A synchronous, non-streaming call (Celery tasks: titles, summaries; the live check).

    `options` are further request fields (`thinking`, `output_config`: see utility.py). Only
    text blocks make the text: thinking blocks are the model's own and are never shown.
    """
    kwargs: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": messages}
    if system:
        kwargs["system"] = system
    extra = dict(options or {})
    if "thinking" in extra:
        kwargs["thinking"] = extra.pop("thinking")
    if extra:
        kwargs["extra_body"] = extra  # output_config: passed through as the API defines it
    try:
        message = sync_client().messages.create(**kwargs)
    except anthropic.APIError as exc:
        raise map_exception(exc) from exc
    text = "".join(block.text for block in message.content if getattr(block, "type", "") == "text")
    usage = Usage()
    usage.update(message.usage.model_dump())
    return Completion(text=text, usage=usage, stop_reason=message.stop_reason or "")


def count_tokens(*, model: str, system: str | list[dict[str, Any]] | None, messages: list[dict[str, Any]]) -> int:
    """What the API counts for a prompt (POST /v1/messages/count_tokens; free, rate-limited)."""
    kwargs: dict[str, Any] = {"model": model, "messages": messages}
    if system:
        kwargs["system"] = system
    try:
        return sync_client().messages.count_tokens(**kwargs).input_tokens
    except anthropic.APIError as exc:
        raise map_exception(exc) from exc


def api_message(error: LLMError) -> str:
    """The API's own words for a failure (status, error type and message) when it gave any,
    else the error's message: for operators (manage.py check_anthropic), never for people."""
    cause = error.__cause__
    if isinstance(cause, anthropic.APIStatusError):
        body = cause.body if isinstance(cause.body, dict) else {}
        detail = body.get("error") if isinstance(body.get("error"), dict) else body
        if isinstance(detail, dict) and detail.get("message"):
            return f"{cause.status_code} {detail.get('type', 'error')}: {detail['message']}"
        return f"{cause.status_code}: {error.message}"
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"
    return error.message
