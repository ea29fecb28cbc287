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
