"""Rendering of finished replies for their final frame, off the web process's GIL.

Every reply that ends is rendered once for its end frame (markdown → HTML → sanitiser: 1–5 ms
of pure-Python CPU for a few thousand characters). In the web process that time is taken from
relaying every other live stream, because one GIL serves the event loop and its threads. So the
rendering runs in a small pool of helper processes (`CHATSITE_RENDER_PROCESSES`, default 1; 0
renders in a thread of this process instead). The helpers import only `renderhelper` and
`rendering` (no Django), start with the first reply, and the output is the same function's:
`rendering.render_markdown`.

Texts are handed over in batches (a `Batcher`): the texts that arrive while a batch is being
rendered go together as the next one. One submit per text blocked the event
loop under a burst of ends: `ProcessPoolExecutor.submit` takes a lock and writes to a wake-up
pipe that its manager thread, starved of the GIL, does not drain (about 300 ms at N=500).

A text that takes longer than `CHATSITE_RENDER_TIMEOUT_SECONDS` is shown as escaped text; the
helper stops it with an alarm and goes on with the rest of the batch. A helper stuck where an
alarm cannot reach it is killed and replaced; one that dies (killed, out of memory) is
replaced too, and the texts in flight are rendered in a thread instead, so no end frame is
ever lost to the pool.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from concurrent.futures.process import BrokenProcessPool

from django.conf import settings

from .asyncdb import background_db
from .batching import Batcher
from .renderhelper import plain_html, render_many
from .rendering import render_markdown

__all__ = ["plain_html", "render", "render_many", "render_now", "shutdown", "warm"]

log = logging.getLogger(__name__)

_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()  # pages render from threads too (render_now)


def _executor() -> ProcessPoolExecutor | None:
    global _pool
    size = settings.CHATSITE_RENDER_PROCESSES
    if size <= 0:
        return None
    with _pool_lock:
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


# --- in the web process ----------------------------------------------------------------------


def _in_thread(texts: list[str]) -> list[str]:
    return render_many(texts, 0)


def in_helper(fn: Callable[[list[str]], list[str]]) -> Callable[[list[str]], Awaitable[list[str]]]:
    """The Batcher's `run`: a batch of texts rendered in a helper process (or, without one,
    by `fn` in a thread)."""

    async def call(texts: list[str]) -> list[str]:
        limit = settings.CHATSITE_RENDER_TIMEOUT_SECONDS
        pool = _executor()
        if pool is not None:
            try:
                future = asyncio.get_running_loop().run_in_executor(pool, render_many, texts, limit, render_markdown)
                # Each text has its own limit in the helper; this one catches a helper stuck
                # where the alarm cannot reach it (inside a C call).
                return await asyncio.wait_for(future, limit * len(texts) + limit)
            except BrokenProcessPool:
                log.warning("A markdown helper process died; rendering %d replies in the web process", len(texts))
                _discard(pool)
            except TimeoutError:
                log.error("Rendering %d replies took too long; showing them unrendered", len(texts))
                _discard(pool, kill=True)
                return [plain_html(text) for text in texts]
            except RuntimeError:  # the pool was shut down (process exit) under us
                pass
        return await background_db(fn)(texts)

    return call


def render_now(texts: list[str]) -> list[str]:
    """render_markdown() of each text, for synchronous callers (a page, a share page, a branch
    switch), with the same limit as a reply's end: each text in a helper process, shown
    escaped past CHATSITE_RENDER_TIMEOUT_SECONDS. Without helpers (CHATSITE_RENDER_PROCESSES=0)
    it renders here, unbounded (rendering is linear in the text's length either way)."""
    if not texts:
        return []
    limit = settings.CHATSITE_RENDER_TIMEOUT_SECONDS
    pool = _executor()
    if pool is None:
        return render_many(texts, 0)
    try:
        return pool.submit(render_many, texts, limit, render_markdown).result(timeout=limit * len(texts) + limit)
    except FuturesTimeout:
        log.error("Rendering %d texts took too long; showing them unrendered", len(texts))
        _discard(pool, kill=True)
    except BrokenProcessPool:
        log.warning("A markdown helper process died; showing %d texts unrendered", len(texts))
        _discard(pool)
    except RuntimeError:  # the pool was shut down (process exit) under us
        pass
    return [plain_html(text) for text in texts]


_batcher: tuple[asyncio.AbstractEventLoop, Batcher[str, str]] | None = None


async def render(text: str) -> str:
    """render_markdown(text), computed in a helper process with the other texts of its batch.

    Never hangs the end of a reply: past CHATSITE_RENDER_TIMEOUT_SECONDS the text is shown as
    it is (escaped).
    """
    global _batcher
    loop = asyncio.get_running_loop()
    if _batcher is None or _batcher[0] is not loop:  # (an old loop's futures are unusable)
        _batcher = (loop, Batcher(_in_thread, run=in_helper, concurrency=lambda: max(1, settings.CHATSITE_RENDER_PROCESSES)))
    return await _batcher[1].submit(text)


def warm() -> None:
    """Start the helpers now (first reply without the start-up delay); safe to call often."""
    pool = _executor()
    if pool is not None:
        pool.submit(render_many, [""], 0)


def shutdown() -> None:
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None
