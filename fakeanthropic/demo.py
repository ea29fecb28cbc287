"""The reply the fake sends when no test has scripted one (the offline demo)."""

from __future__ import annotations

QUOTE_CHARS = 80

DEMO_TEMPLATE = """\
## Hello from the offline demo model

This is **Chatsite's offline demo model**. No `ANTHROPIC_API_KEY` is set, so this \
answer comes from a local fake of the Anthropic API, not from Claude.

You wrote:

> {quote}

### What this demo shows

- Replies **stream** in token by token, as they would from the real API.
- Markdown is rendered: headings, lists, **bold** and `inline code`.
- Code blocks get syntax highlighting:

```python
def greet(name: str) -> str:
    return f"Hello, {{name}}!"


print(greet("Chatsite"))
```

### How to talk to a real Claude model

1. Create an API key in the Anthropic Console.
2. Set it in your shell: `export ANTHROPIC_API_KEY=sk-ant-...`
3. Stop the server and restart it with `make run`.

Until then, every message you send gets this demo answer, so feel free to try \
the interface: new conversations, long messages and streaming all work offline.
"""


def quote_start(text: str, limit: int = QUOTE_CHARS) -> str:
    """The start of `text` on one line, cut at a word boundary near `limit`."""
    flat = " ".join(text.split())
    if not flat:
        return "(an empty message)"
    if len(flat) <= limit:
        return flat
    cut = flat[:limit]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" .,;:") + "…"


def demo_reply(last_user_text: str) -> str:
    return DEMO_TEMPLATE.format(quote=quote_start(last_user_text))
