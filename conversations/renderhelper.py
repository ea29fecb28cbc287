"""What a render helper process runs (renderpool): rendering with a time limit per text.

Imported by the helpers, so it imports no Django: only `rendering` and the standard library.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from html import escape

from .rendering import render_markdown


def plain_html(text: str) -> str:
    """The text as it is, escaped: what a reply shows when it cannot be rendered."""
    return f"<pre>{escape(text)}</pre>"


class _TooSlow(Exception):
    pass


def _alarm(signum, frame):  # noqa: ANN001 - a signal handler
    raise _TooSlow


def render_many(texts: list[str], limit: float, render: Callable[[str], str] = render_markdown) -> list[str]:
    """Each text rendered; one that takes longer than `limit` seconds is shown escaped.

    In a helper's main thread an alarm enforces the limit per text. Elsewhere (the thread
    fallback of the web process) there is no limit: signals reach only the main thread.
    """
    timed = limit > 0 and threading.current_thread() is threading.main_thread()
    if timed:
        signal.signal(signal.SIGALRM, _alarm)
    out = []
    for text in texts:
        try:
            if timed:
                signal.setitimer(signal.ITIMER_REAL, limit)
            out.append(render(text))
        except _TooSlow:
            out.append(plain_html(text))
        finally:
            if timed:
                signal.setitimer(signal.ITIMER_REAL, 0)
    return out
