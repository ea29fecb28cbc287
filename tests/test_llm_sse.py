"""The SSE body of a streamed reply read as lines straight from its bytes (llm.sse_lines)."""

from __future__ import annotations

import random
import re

import pytest

from conversations.llm import sse_lines

BODY = (
    'event: message_start\r\ndata: {"type":"message_start"}\r\n\r\n'
    'event: content_block_delta\ndata: {"delta":{"type":"text_delta","text":"h\u00e9llo \u2713 \U0001f600"}}\n\n'
    "event: ping\rdata: {}\r\r"
    'event: message_stop\ndata: {"type":"message_stop"}'
).encode()


def _expected(body: bytes) -> list[bytes]:
    return [line for line in re.split(rb"\r\n|\r|\n", body) if line]


async def _lines(chunks: list[bytes]) -> list[bytes]:
    async def source():
        for chunk in chunks:
            yield chunk

    return [line async for line in sse_lines(source())]


@pytest.mark.parametrize("seed", range(40))
async def test_lines_are_the_same_however_the_body_is_cut_into_chunks(seed):
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(BODY)), rng.randint(1, 30)))
    chunks = [BODY[a:b] for a, b in zip([0, *cuts], [*cuts, len(BODY)])]
    assert await _lines(chunks) == _expected(BODY)


async def test_every_cut_point_including_inside_a_crlf_and_a_multibyte_character():
    for cut in range(1, len(BODY)):
        assert await _lines([BODY[:cut], BODY[cut:]]) == _expected(BODY), cut
    lines = await _lines([BODY[i:i + 1] for i in range(len(BODY))])  # one byte at a time
    assert lines == _expected(BODY)
    assert "h\u00e9llo \u2713 \U0001f600".encode() in lines[3]
