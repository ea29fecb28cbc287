"""Finished replies are rendered in a helper process; a dead helper never costs a reply its HTML."""

from __future__ import annotations

import os
import signal

import pytest

from conversations import renderpool
from conversations.rendering import render_markdown

TEXT = "# Title\n\nSome **bold** text, `code`, and a [link](https://example.com).\n\n<script>alert(1)</script>"


@pytest.fixture
def fresh_pool(settings):
    settings.CHATSITE_RENDER_PROCESSES = 1
    renderpool.shutdown()
    yield
    renderpool.shutdown()


async def test_rendering_happens_in_another_process_with_the_same_output(fresh_pool):
    html = await renderpool.render(TEXT)
    assert html == render_markdown(TEXT)
    assert "<strong>bold</strong>" in html and "<script" not in html
    pool = renderpool._executor()
    pids = {p.pid for p in pool._processes.values()}
    assert pids and os.getpid() not in pids


async def test_a_killed_helper_is_replaced_and_the_reply_still_renders(fresh_pool):
    await renderpool.render("warm up")
    pool = renderpool._executor()
    for process in list(pool._processes.values()):
        os.kill(process.pid, signal.SIGKILL)
        process.join(5)
    # The pool in flight is broken: this reply is rendered in the web process instead...
    assert await renderpool.render(TEXT) == render_markdown(TEXT)
    # ...and the next one gets a new helper.
    assert await renderpool.render(TEXT) == render_markdown(TEXT)
    assert renderpool._executor() is not pool


async def test_zero_helpers_renders_in_a_thread(settings):
    renderpool.shutdown()
    settings.CHATSITE_RENDER_PROCESSES = 0
    assert renderpool._executor() is None
    assert await renderpool.render(TEXT) == render_markdown(TEXT)


def _slow(text: str) -> str:  # (module level: the helper imports it by name)
    import time

    time.sleep(60)
    return text


def _stuck(text: str) -> str:
    """Stuck where an alarm cannot reach it (signals blocked, as inside a long C call)."""
    import signal
    import time

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(60)
    return text


async def test_a_slow_text_times_out_to_escaped_text_and_the_rest_of_its_batch_renders(fresh_pool, settings, monkeypatch):
    import asyncio

    settings.CHATSITE_RENDER_TIMEOUT_SECONDS = 1
    await renderpool.render("warm up")
    pool = renderpool._executor()
    pids = {p.pid for p in pool._processes.values()}
    real = render_markdown

    def some_slow(text: str) -> str:
        return _slow(text) if text.startswith("slow") else real(text)

    monkeypatch.setattr(renderpool, "render_markdown", _slow)
    slow = asyncio.ensure_future(renderpool.render("slow <b>5 < 6</b>"))
    await asyncio.sleep(0.2)  # the next texts queue behind it and go as one batch
    monkeypatch.setattr(renderpool, "render_markdown", real)
    results = await asyncio.gather(slow, *(renderpool.render(f"{TEXT} {n}") for n in range(3)))
    assert results[0] == "<pre>slow &lt;b&gt;5 &lt; 6&lt;/b&gt;</pre>"
    assert results[1:] == [real(f"{TEXT} {n}") for n in range(3)]
    # The helper stopped that text itself: it was neither killed nor replaced.
    assert renderpool._executor() is pool and {p.pid for p in pool._processes.values()} == pids


async def test_a_helper_stuck_beyond_the_alarm_is_killed_and_replaced(fresh_pool, settings, monkeypatch):
    settings.CHATSITE_RENDER_TIMEOUT_SECONDS = 1
    await renderpool.render("warm up")
    pool = renderpool._executor()
    stuck_pids = [p.pid for p in pool._processes.values()]
    monkeypatch.setattr(renderpool, "render_markdown", _stuck)
    assert await renderpool.render("<b>5 < 6</b>") == "<pre>&lt;b&gt;5 &lt; 6&lt;/b&gt;</pre>"
    for pid in stuck_pids:  # killed, not left sleeping
        with pytest.raises(ProcessLookupError):
            for _ in range(50):
                os.kill(pid, 0)
                import time

                time.sleep(0.1)
    monkeypatch.undo()
    assert await renderpool.render(TEXT) == render_markdown(TEXT)
    assert renderpool._executor() is not pool


def test_render_many_limits_each_text_only_in_a_main_thread():
    from concurrent.futures import ThreadPoolExecutor

    assert renderpool.render_many(["a *b*", "slow"], 0.5, lambda t: _slow(t) if t == "slow" else render_markdown(t)) == [
        render_markdown("a *b*"), "<pre>slow</pre>",
    ]
    with ThreadPoolExecutor(1) as pool:  # no alarm off the main thread: no limit either
        assert pool.submit(renderpool.render_many, ["a *b*"], 0.5).result() == [render_markdown("a *b*")]
