"""The lean SSE read of a streamed reply (as conversations/llm.py does it), without Django.

The SDK builds, authenticates and retries the request; the body is read as SSE lines straight
from its bytes (the same `llm.sse_lines` Chatsite uses) and only text deltas are JSON-decoded.
Shared by the bare relay and the floor, so their figures measure what Chatsite adds, not a
different read.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anthropic

from conversations.llm import sse_lines  # (imports no Django settings: none are read)

MODEL = "claude-sonnet-5-5"
_TEXT_DELTA = b'"text_delta"'


class StreamFailed(Exception):
    pass


def make_client(base_url: str, api_key: str = "bench") -> anthropic.AsyncAnthropic:
    # Same timeouts and retries as Chatsite's defaults (settings.ANTHROPIC_*).
    return anthropic.AsyncAnthropic(
        api_key=api_key, base_url=base_url, timeout=anthropic.Timeout(120.0, connect=10.0), max_retries=3
    )


async def text_deltas(client: anthropic.AsyncAnthropic, content: str, max_tokens: int = 4096) -> AsyncIterator[str]:
    """Yield the reply's text deltas as they arrive; StreamFailed on an error event or a cut."""
    async with client.messages.with_streaming_response.create(
        model=MODEL, max_tokens=max_tokens, messages=[{"role": "user", "content": content}], stream=True
    ) as response:
        event = b""
        async for line in sse_lines(response.http_response.aiter_bytes()):
            if line.startswith(b"event:"):
                event = line[6:].strip()
                continue
            if not line.startswith(b"data:"):
                continue
            if event == b"content_block_delta":
                if _TEXT_DELTA in line:
                    yield json.loads(line[5:])["delta"]["text"]
            elif event == b"message_stop":
                return
            elif event == b"error":
                raise StreamFailed(line[5:].strip().decode())
    raise StreamFailed("stream cut")
