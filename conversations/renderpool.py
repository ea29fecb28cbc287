"""Rendering of finished replies for their final frame, off the web process's GIL.

Every reply that ends is rendered once for its end frame (markdown → HTML → sanitiser: 2–5 ms
of pure-Python CPU for a few thousand characters). In the web process that time is taken from
relaying every other live stream, because one GIL serves the event loop and its threads. So the
rendering runs in a small pool of helper processes (`CHATSITE_RENDER_PROCESSES`, default 1; 0
renders in a thread of this process instead). The helpers import only `rendering` (no Django),
start with the first reply, and the output is the same function's: `rendering.render_markdown`.

A helper that dies (killed, out of memory) is replaced for the next reply; the reply in flight
is rendered in a thread instead, so no end frame is ever lost to the pool.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from html import escape
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from django.conf import settings

from .asyncdb import background_db
from .rendering import render_markdown

log = logging.getLogger(__name__)

_pool: ProcessPoolExecutor | None = None


def _executor() -> ProcessPoolExecutor | None:
    global _pool
    size = settings.CHATSITE_RENDER_PROCESSES
    if size <= 0:
        return None
    if _pool is None:
        # spawn, not fork: the web process has threads and an event loop that a fork would copy.
        _pool = ProcessPoolExecutor(max_workers=size, mp_context=multiprocessing.get_context("spawn"))
    return _pool


def _discard(pool: ProcessPoolExecutor, *, kill: bool = False) -> None:
    global _pool
    if _pool is pool:
        _pool = None
    if kill:  # a helper stuck on one text would never take another (nor exit by itself)
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()
    pool.shutdown(wait=False, cancel_futures=True)


async def render(text: str) -> str:
    """render_markdown(text), computed in a helper process.

    Never hangs the end of a reply: past CHATSITE_RENDER_TIMEOUT_SECONDS the helper is
    replaced and the text is shown as it is (escaped).
    """
    pool = _executor()
    if pool is not None:
        try:
            future = asyncio.get_running_loop().run_in_executor(pool, render_markdown, text)
            return await asyncio.wait_for(future, settings.CHATSITE_RENDER_TIMEOUT_SECONDS)
        except BrokenProcessPool:
            log.warning("A markdown helper process died; rendering this reply in the web process")
            _discard(pool)
        except TimeoutError:
            log.error("Rendering %d characters took over %ss; showing them unrendered", len(text), settings.CHATSITE_RENDER_TIMEOUT_SECONDS)
            _discard(pool, kill=True)
            return plain_html(text)
        except RuntimeError:  # the pool was shut down (process exit) under us
            pass
    return await background_db(render_markdown)(text)


def plain_html(text: str) -> str:
    """The text as it is, escaped: what a reply shows when it cannot be rendered."""
    return f"<pre>{escape(text)}</pre>"


def warm() -> None:
    """Start the helpers now (first reply without the start-up delay); safe to call often."""
    pool = _executor()
    if pool is not None:
        pool.submit(render_markdown, "")


def shutdown() -> None:
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None
