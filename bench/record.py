"""One benchmark stream's record, and the stamp reader shared by the clients and the floor.

The fake's stamped deltas are `<t:{epoch float}> `; relay latency of a stamp = receive time - stamp.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

STAMP_RE = re.compile(r"<t:([0-9]+\.[0-9]+)> ")


@dataclass
class Stream:
    idx: int
    sent_at: float = 0.0  # client send (or floor request start), epoch seconds
    first_at: float | None = None  # first text received
    end_at: float | None = None
    status: str = ""  # "complete" when the server said so; else an error description
    stamps: int = 0
    in_order: bool = True
    length: int = 0  # code points applied
    content_length: int | None = None  # what the end frame announced
    frames: int = 0  # delta frames received
    gaps: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, one per stamp
    frame_times: list[float] = field(default_factory=list)  # receive time of every applied frame
    _carry: str = ""
    _last: float = 0.0

    def take_text(self, new: str, now: float) -> None:
        """Apply newly received text (no duplicates): record a latency per complete stamp."""
        self.frame_times.append(now)
        buf = self._carry + new if self._carry else new
        end = 0
        for m in STAMP_RE.finditer(buf):
            stamp = float(m.group(1))
            if stamp < self._last:
                self.in_order = False
            self._last = stamp
            self.latencies.append(now - stamp)
            end = m.end()
        self.stamps = len(self.latencies)
        self._carry = buf[end:]

    def ok(self, deltas: int) -> bool:
        return (
            self.status == "complete"
            and self.stamps == deltas
            and self.in_order
            and (self.content_length is None or self.content_length == self.length)
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("_carry")
        d.pop("_last")
        d["latencies"] = [round(x, 5) for x in self.latencies]
        d["frame_times"] = [round(x, 4) for x in self.frame_times]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Stream":
        return cls(**{k: v for k, v in d.items() if not k.startswith("_")})
