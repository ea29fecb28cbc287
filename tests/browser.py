"""What the browser tests share: how Debian's Chromium is launched, unique names, screenshots.

The `browser` and `live_stack` fixtures built on these live in conftest.py (one Chromium and
one daphne stack per test module; a module may override `live_stack` to set settings).
"""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.livestack import REPO_ROOT

# Without the background-networking flags Chromium keeps trying to reach Google's hosts,
# which this machine's closed network refuses.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO_ROOT / "var" / "test-artifacts"


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot under var/test-artifacts/ (kept by CI as an artifact)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    try:
        page.screenshot(path=str(path), full_page=True)
    except Exception as exc:  # the page may be gone
        print(f"no screenshot {path}: {exc}")
    return path


def watched_page(request, browser, live_stack, *, shot_prefix: str, **context_options):
    """A page on the live stack for one test (use as a generator fixture's body: `yield from`).

    On failure: a screenshot, the browser console and the server log's tail. Always: the test
    fails if the page threw an uncaught JavaScript error.
    """
    context = browser.new_context(base_url=live_stack.url, **{"viewport": {"width": 1280, "height": 900}, **context_options})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page_errors: list[str] = []
    console: list[str] = []
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    failed_before = request.session.testsfailed
    yield page
    if request.session.testsfailed > failed_before:
        screenshot(page, f"{shot_prefix}-fail-{request.node.name}")
        print("browser console:\n" + "\n".join(console))
        print("server log (tail):\n" + live_stack.log_text(8000))
    context.close()
    assert not page_errors, f"uncaught JavaScript errors: {page_errors}"
