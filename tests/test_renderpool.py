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


def _stuck(text: str) -> str:  # (module level: the helper imports it by name)
    import time

    time.sleep(60)
    return text


async def test_a_stuck_render_times_out_to_escaped_text_and_the_helper_is_replaced(fresh_pool, settings, monkeypatch):
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
