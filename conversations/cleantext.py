"""What text may reach the database, decided once.

A Python string can hold two things no database row can: U+0000 (PostgreSQL text refuses it)
and lone surrogates (U+D800–U+DFFF on their own are not Unicode text; UTF-8 cannot encode them,
on any database). JSON carries both (`\\u0000`, `\\ud800`), so a websocket frame, an API body,
an import file or Claude's streamed reply can bring them in.

The rule, at the edges:
- Everything stored goes through `storable()`: each NUL and each lone surrogate becomes
  U+FFFD (the replacement character), one code point for one, so a reply's offsets (which
  count code points) stay the same between what was streamed and what is stored. Services
  apply it to what people write (messages, titles), to what Claude writes (replies,
  checkpoints, titles, summaries, errors) and to imports; selectors to search terms.
- A request from a person whose JSON holds a lone surrogate is refused as malformed
  (websocket `bad_frame`, API 400, `has_lone_surrogate`): it cannot come from typing, only from a
  hand-made `\\ud800` escape, and saying so is clearer than storing something else.
"""

from __future__ import annotations

import re
from typing import Any

REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(text: str) -> str:
    """`text` with each NUL and lone surrogate replaced by U+FFFD (same length)."""
    if _UNSTORABLE.search(text) is None:  # the usual case: no copy
        return text
    return _UNSTORABLE.sub(REPLACEMENT, text)


def has_lone_surrogate(value: Any) -> bool:
    """Whether parsed JSON (any nesting of dicts, lists, strings) holds a lone surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item) is not None:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
