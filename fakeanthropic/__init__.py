"""Chatsite's local fake of the Anthropic Messages API (tests, offline demo, benchmark).

Run it with ``python -m fakeanthropic --port 0`` and point the SDK at the printed URL:
``anthropic.AsyncAnthropic(api_key="anything", base_url=url)``.
"""

from .server import build_app, split_deltas, approx_tokens  # noqa: F401

__all__ = ["build_app", "split_deltas", "approx_tokens"]
