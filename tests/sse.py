"""A small Server-Sent Events parser for tests (the WHATWG rules the API relies on).

    parser = SSEParser()
    for event in parser.feed(chunk): ...   # chunks may split lines anywhere
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SSEEvent:
    event: str
    data: str
    id: str | None = None

    @property
    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class SSEParser:
    comments: int = 0
    _buffer: str = ""
    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _id: str | None = None

    def feed(self, chunk: bytes | str) -> list[SSEEvent]:
        self._buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
        events: list[SSEEvent] = []
        while True:
            cut = min((i for i in (self._buffer.find("\r"), self._buffer.find("\n")) if i >= 0), default=-1)
            if cut < 0:
                return events
            if self._buffer[cut] == "\r" and cut + 1 == len(self._buffer):
                return events  # a CR at the end may be the first half of CRLF
            line = self._buffer[:cut]
            skip = 2 if self._buffer[cut : cut + 2] == "\r\n" else 1
            self._buffer = self._buffer[cut + skip :]
            event = self._line(line)
            if event is not None:
                events.append(event)

    def _line(self, line: str) -> SSEEvent | None:
        if line == "":
            if not self._data:
                self._event = ""
                return None
            event = SSEEvent(event=self._event or "message", data="\n".join(self._data), id=self._id)
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            self.comments += 1
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        return None


def apply_deltas(events: list[SSEEvent], have: str = "") -> str:
    """The text the delta events make, checking they continue each other exactly."""
    text = have
    for event in events:
        if event.event == "delta":
            data = event.json
            assert data["offset"] == len(text), f"delta at {data['offset']}, have {len(text)}"
            text += data["text"]
            assert event.id == str(len(text))
    return text
