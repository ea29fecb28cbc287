"""Rendered HTML of finished messages, kept in a cache.

Rendering markdown (parse, highlight, sanitise) is most of the server's time for a long
conversation: ~1,000 replies cost about half a second. The conversation page asks for all its
replies at once, in one cache round trip, and renders only what is missing.

Keys are the hash of the text plus a fingerprint of the renderer (the source of rendering.py
and the versions of the libraries it uses), so an entry is never stale: a continued or edited
reply has new text, and a deploy that changes how markdown renders changes every key. Equal
texts share one entry; that gives nobody anything they do not already have (their own text).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from django.core.cache import caches

from . import rendering, renderpool

CACHE_ALIAS = "rendered"
TIMEOUT_SECONDS = 7 * 24 * 3600
_LIBRARIES = ("markdown-it-py", "mdit-py-plugins", "nh3", "Pygments")

log = logging.getLogger(__name__)


def _renderer_fingerprint() -> str:
    digest = hashlib.sha256(Path(rendering.__file__).read_bytes())
    for name in _LIBRARIES:
        try:
            digest.update(f"{name}=={metadata.version(name)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(name.encode())
    return digest.hexdigest()[:16]


FINGERPRINT = _renderer_fingerprint()


def cache_key(text: str) -> str:
    return f"md:{FINGERPRINT}:{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()}"


def render_markdown_many(texts: Sequence[str]) -> list[str]:
    """render_markdown() of each text, in order; cached ones come from the cache.

    A cache that is down costs the rendering, never the page.
    """
    keys = [cache_key(text or "") for text in texts]
    cache = caches[CACHE_ALIAS]
    try:
        found = cache.get_many(set(keys)) if keys else {}
    except Exception:  # noqa: BLE001 - Redis down or a corrupt entry: render instead
        log.warning("rendered-HTML cache unavailable; rendering %d messages", len(keys), exc_info=True)
        found = {}
    missing: dict[str, str] = {}
    for key, text in zip(keys, texts):
        if not isinstance(found.get(key), str):
            missing.setdefault(key, text or "")
    # In a helper process, each text with a time limit (renderpool): a page, a share page or a
    # branch switch is bounded like the end of a reply.
    fresh = dict(zip(missing, renderpool.render_now(list(missing.values()))))
    out = [found[key] if isinstance(found.get(key), str) else fresh[key] for key in keys]
    # A text shown unrendered (too slow) is not kept: it is tried again next time.
    fresh = {key: html for key, html in fresh.items() if html != renderpool.plain_html(missing[key])}
    if fresh:
        try:
            cache.set_many(fresh, timeout=TIMEOUT_SECONDS)
        except Exception:  # noqa: BLE001
            log.warning("could not store %d rendered messages in the cache", len(fresh), exc_info=True)
    return out
