"""What one websocket, and one person, may ask of the server.

- Frames per socket (CHATSITE_WS_FRAME_RATE, e.g. "120/m"): counted in the socket itself, in
  fixed windows. Past the limit each frame is answered with a `rate_limited` error and not
  run; a client that goes on to twice the limit in one window is disconnected (4429).
- Replies started per person (CHATSITE_WS_SEND_RATE, e.g. "20/m": sends, edits, retries and
  continues, over all their sockets and processes): a sliding window in Django's default
  cache (Redis when there is one), with ninja's throttle, as the HTTP API's limits are.

An empty setting turns that limit off.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from enum import Enum

from django.conf import settings
from ninja.throttling import SimpleRateThrottle

TOO_MANY_FRAMES = 4429


class Verdict(Enum):
    OK = "ok"
    REFUSE = "refuse"
    CLOSE = "close"


class FrameLimit:
    """The frames one socket has sent in the current window."""

    def __init__(self, rate: str, clock: Callable[[], float] = time.monotonic) -> None:
        parsed = _Rate(rate) if rate else None
        self.count = parsed.num_requests if parsed else None
        self.period = parsed.duration if parsed else None
        self.clock = clock
        self.window_start = clock()
        self.used = 0

    def check(self) -> Verdict:
        if not self.count:
            return Verdict.OK
        now = self.clock()
        if now - self.window_start >= self.period:
            self.window_start, self.used = now, 0
        self.used += 1
        if self.used <= self.count:
            return Verdict.OK
        return Verdict.CLOSE if self.used > 2 * self.count else Verdict.REFUSE

    def wait(self) -> int:
        """Whole seconds until the window ends."""
        return max(1, math.ceil(self.period - (self.clock() - self.window_start))) if self.period else 1


class _Rate(SimpleRateThrottle):
    """ninja's sliding-window throttle, keyed by a person's id."""

    def get_cache_key(self, request: int) -> str:  # type: ignore[override]  # (a user id, not a request)
        return f"chatsite-ws:starts:{request}"


def reply_start_wait(*, user_id: int) -> int | None:
    """None if the person may start another reply now (and it is counted); else whole seconds
    to wait. Synchronous (a cache round trip): call it from a thread."""
    rate = settings.CHATSITE_WS_SEND_RATE
    if not rate:
        return None
    throttle = _Rate(rate)
    if throttle.allow_request(user_id):  # type: ignore[arg-type]
        return None
    oldest = throttle.history[-1] if throttle.history else throttle.now
    return max(1, math.ceil(throttle.duration - (throttle.now - oldest)))
