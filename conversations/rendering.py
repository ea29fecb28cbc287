"""The one place model output becomes HTML: markdown → HTML → sanitiser.

markdown-it-py renders with raw HTML disabled, Pygments highlights fenced code, and nh3 (an
allow-list sanitiser) cleans the result, so neither markdown tricks nor a renderer bug can put a
script, an event handler, a `javascript:` URL or a tracking image on the page. The sanitiser is
authoritative: whatever the renderer (or a plugin) produces, only the tags, attributes, classes
and URL schemes listed here reach the browser.

What is rendered:
- CommonMark plus GFM tables, strikethrough, task lists, alerts (`> [!NOTE]`) and bare-URL
  autolinks (`https://…`, `www.…`, e-mail addresses).
- Fenced code, highlighted by Pygments when the language is known. The language name is reduced
  to a safe token before it becomes a class (`language-python`); the copy buttons and the
  language label are added in the browser (static/chatsite/copy.js).
- Links open in a new tab with `rel="noopener noreferrer nofollow"`; only http, https and mailto
  URLs keep their `href` (relative URLs are dropped too: a reply must not link into the app).
- Images become links (`🖼 alt text`): an image would be fetched without a click, which lets a
  prompt-injected reply send data to another server in the image URL.
- Math: `$…$`, `$$…$$`, `\\(…\\)` and `\\[…\\]` become `<span class="math math-inline">` /
  `<span|div class="math math-display">` holding the TeX source as plain text. That is readable
  as it is, and static/chatsite/math.js typesets it in the browser with the vendored KaTeX
  (trust off), so nothing math-related ever needs to pass the sanitiser as markup. A `$` before
  a digit or followed by a space is not math (`it costs $5 and $10`).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.rules_block import StateBlock
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token
from mdit_py_plugins.dollarmath import dollarmath_plugin
from mdit_py_plugins.gfm_autolink import gfm_autolink_plugin
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound

from .cleantext import storable

_FORMATTER = HtmlFormatter(nowrap=True)
# What may follow `language-`: a fence's info string is free text (```"><script>…).
_LANGUAGE = re.compile(r"[a-z0-9_+#.-]{1,32}")


# --- markdown → HTML -----------------------------------------------------------------------


def code_language(info: str) -> str:
    """The safe language token of a fence's info string, or ""."""
    word = html.unescape(info).strip().split(maxsplit=1)
    lang = word[0].lower() if word else ""
    return lang if _LANGUAGE.fullmatch(lang) else ""


def _render_fence(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    lang = code_language(token.info)
    try:
        lexer = get_lexer_by_name(lang) if lang else None
    except ClassNotFound:
        lexer = None
    body = highlight(token.content, lexer, _FORMATTER) if lexer is not None else escapeHtml(token.content)
    cls = f' class="language-{lang}"' if lang else ""
    return f"<pre><code{cls}>{body}</code></pre>\n"


def _render_image(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children or [], options, env).strip() or "image"
    src = str(token.attrGet("src") or "")
    return f'<a class="md-image-link" href="{escapeHtml(src)}">🖼 {escapeHtml(alt)}</a>'


def _math_inline(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    return f'<span class="math math-inline">{escapeHtml(tokens[idx].content.strip())}</span>'


def _math_inline_display(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    # A span (styled as a block): a div inside a <p> would break the paragraph apart.
    return f'<span class="math math-display">{escapeHtml(tokens[idx].content.strip())}</span>'


def _math_block(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    return f'<div class="math math-display">{escapeHtml(tokens[idx].content.strip())}</div>\n'


_TEX_HINT = re.compile(r"[\\^_={}+<>]")
# Bounds on how far a delimiter looks for its closer: an unclosed `\(` or `\[` must not make
# rendering quadratic in the length of the reply.
_MAX_INLINE_TEX = 4000
_MAX_BLOCK_TEX_LINES = 200


def _bracket_math_inline(state: StateInline, silent: bool) -> bool:
    r"""`\(…\)` inline and `\[…\]` inside a paragraph (LaTeX delimiters, common in model output)."""
    src, pos = state.src, state.pos
    if not src.startswith(("\\(", "\\["), pos):
        return False
    closer = "\\)" if src[pos + 1] == "(" else "\\]"
    end = src.find(closer, pos + 2, pos + _MAX_INLINE_TEX)
    if end < 0 or not src[pos + 2 : end].strip():
        return False
    if closer == "\\]" and not _TEX_HINT.search(src[pos + 2 : end]):
        return False  # `\[1\]` is how markdown writes a literal "[1]"
    if not silent:
        token = state.push("math_inline" if closer == "\\)" else "math_inline_double", "math", 0)
        token.content = src[pos + 2 : end]
        token.markup = src[pos : pos + 2]
    state.pos = end + 2
    return True


def _bracket_math_block(state: StateBlock, start_line: int, end_line: int, silent: bool) -> bool:
    r"""`\[ … \]` starting a line, on one line or several (no blank line inside)."""
    if state.sCount[start_line] - state.blkIndent >= 4:
        return False
    begin = state.bMarks[start_line] + state.tShift[start_line]
    if not state.src.startswith("\\[", begin):
        return False
    parts: list[str] = []
    line = start_line
    text = state.src[begin + 2 : state.eMarks[start_line]]
    while True:
        close = text.find("\\]")
        if close >= 0:
            if text[close + 2 :].strip():
                return False  # more text after it: an inline formula in a paragraph
            parts.append(text[:close])
            break
        parts.append(text)
        line += 1
        if line >= end_line or line - start_line > _MAX_BLOCK_TEX_LINES or state.isEmpty(line) or state.sCount[line] < state.blkIndent:
            return False
        text = state.src[state.bMarks[line] + state.tShift[line] : state.eMarks[line]]
    content = "\n".join(parts)
    if not content.strip():
        return False
    if silent:
        return True
    token = state.push("math_block", "math", 0)
    token.block = True
    token.content = content
    token.markup = "\\["
    token.map = [start_line, line + 1]
    state.line = line + 1
    return True


def _rule_fn(md: MarkdownIt, name: str) -> Any:
    return next(rule.fn for rule in md.inline.ruler.__rules__ if rule.name == name)


def _no_code_inside(rule: Any) -> Any:
    """A `$…$` that would swallow a backtick is not math: the `$` in "costs $5 … `$x`" stays
    text and the code span stays code (math is matched before code spans are)."""

    def wrapped(state: StateInline, silent: bool) -> bool:
        # A dry run first (silent: no tokens, no pending text flushed), then the real one.
        start = state.pos
        matched = rule(state, True)
        end, state.pos = state.pos, start
        if not matched or "`" in state.src[start:end]:
            return False
        return rule(state, silent)

    return wrapped


# How far one bare autolink may reach. The plugin's rules copy the whole rest of the paragraph
# at every try (each `:` after a protocol name, each `@`, each `www.`): quadratic in a long
# paragraph full of them. Within this window each try costs at most this much; a longer URL
# ends here (the rest stays text).
_AUTOLINK_WINDOW = 4096
# What may follow `mailto:` / `xmpp:` for an address to start (the plugin's local-part characters).
_EMAIL_LOCAL = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.+-_")


def _bounded(rule: Any) -> Any:
    """One of the plugin's autolink rules, looking at most _AUTOLINK_WINDOW characters ahead."""

    def wrapped(state: StateInline, silent: bool) -> bool:
        end = state.posMax
        state.posMax = min(end, state.pos + _AUTOLINK_WINDOW)
        try:
            return rule(state, silent)
        finally:
            state.posMax = end

    return wrapped


def _protocol_first(rule: Any) -> Any:
    """The plugin's `http://…` rule, tried only where it can match.

    It runs at every `:` and searches all the text pending since the last token for a
    protocol name at its end: quadratic in a long paragraph full of colons (times,
    `key: value` lines) or of protocol names that are not links (`http:a http:a …`). So it
    is tried only after a protocol name followed by what a link needs (`//` after http(s),
    an address after mailto/xmpp), and with a short pending text: what came before is
    handed over as a text token first (the same HTML).
    """
    names = ("http", "https", "mailto", "xmpp")

    def wrapped(state: StateInline, silent: bool) -> bool:
        pending = state.pending
        if not pending.endswith(names):
            return False
        after = state.src[state.pos + 1 : state.pos + 3]
        if pending.endswith(("http", "https")) and after != "//":
            return False
        if pending.endswith(("mailto", "xmpp")) and (not after or after[0] not in _EMAIL_LOCAL):
            return False
        if len(pending) > 64:
            head, tail = pending[:-16], pending[-16:]
            state.pending = head
            state.pushPending()
            state.pending = tail
        return rule(state, silent)

    return wrapped


def guard_autolinks(md: MarkdownIt) -> None:
    """Make the GFM autolink plugin's rules (already in `md`) linear in the text's length."""
    md.inline.ruler.at("gfm_autolink_protocol", _protocol_first(_bounded(_rule_fn(md, "gfm_autolink_protocol"))))
    for name in ("gfm_autolink_www", "gfm_autolink_email"):
        md.inline.ruler.at(name, _bounded(_rule_fn(md, name)))


def _build_markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "typographer": False, "tasklists": True, "alerts": True})
    md.enable(["table", "strikethrough"])
    md.use(gfm_autolink_plugin)
    guard_autolinks(md)
    md.use(
        dollarmath_plugin,
        allow_labels=False, allow_space=False, allow_digits=False, allow_blank_lines=False,
        double_inline=True,  # its render rules are replaced below
    )
    md.inline.ruler.at("math_inline", _no_code_inside(_rule_fn(md, "math_inline")))
    md.inline.ruler.before("escape", "math_brackets", _bracket_math_inline)
    # Not a paragraph terminator: a `\[` right under a line of text is matched inline (and shown
    # as a display formula all the same), so lines are not rescanned for a closer one by one.
    md.block.ruler.before("fence", "math_block_brackets", _bracket_math_block)
    md.add_render_rule("fence", _render_fence)
    md.add_render_rule("image", _render_image)
    md.add_render_rule("math_inline", _math_inline)
    md.add_render_rule("math_inline_double", _math_inline_display)
    md.add_render_rule("math_block", _math_block)
    return md


_md = _build_markdown()


# --- the sanitiser ---------------------------------------------------------------------------

_ALLOWED_TAGS = {
    "p", "br", "hr", "strong", "em", "del", "s", "code", "pre", "blockquote",
    "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6",
    "table", "thead", "tbody", "tr", "th", "td", "a", "span", "div", "input",
}
_ALLOWED_ATTRIBUTES = {
    "a": {"href", "title", "class"},
    "code": {"class"},
    "span": {"class"},
    "div": {"class"},
    "p": {"class"},
    "ul": {"class"},
    "ol": {"start", "class"},
    "li": {"class"},
    "th": {"style"},
    "td": {"style"},
    "input": {"class", "checked"},  # task-list boxes; `type` and `disabled` are forced below
}
_PYGMENTS_CLASS = re.compile(r"(?:%s)(?:-[A-Za-z]+)*" % "|".join(sorted((re.escape(c) for c in STANDARD_TYPES.values() if c), key=len, reverse=True)))
_ALERTS = {f"markdown-alert-{kind}" for kind in ("note", "tip", "important", "warning", "caution")}
# Classes the renderer emits, per tag; anything else is dropped, so a reply cannot borrow the
# app's own classes (an overlay, a hidden button) to dress itself up as the interface.
_ALLOWED_CLASSES: dict[str, Any] = {
    "span": lambda c: c in {"math", "math-inline", "math-display"} or _PYGMENTS_CLASS.fullmatch(c),
    "div": lambda c: c in {"math", "math-display", "markdown-alert"} | _ALERTS,
    "p": lambda c: c == "markdown-alert-title",
    "ul": lambda c: c == "contains-task-list",
    "ol": lambda c: c == "contains-task-list",
    "li": lambda c: c == "task-list-item",
    "input": lambda c: c == "task-list-item-checkbox",
    "a": lambda c: c == "md-image-link",
    "code": lambda c: c.startswith("language-") and _LANGUAGE.fullmatch(c[9:]),
}


def _attribute_filter(tag: str, attr: str, value: str) -> str | None:
    if attr != "class":
        return value
    allowed = _ALLOWED_CLASSES.get(tag)
    kept = [c for c in value.split() if allowed is not None and allowed(c)]
    return " ".join(kept) or None


_cleaner = nh3.Cleaner(
    tags=_ALLOWED_TAGS,
    attributes=_ALLOWED_ATTRIBUTES,
    attribute_filter=_attribute_filter,
    tag_attribute_values={"input": {"type": {"checkbox"}}},
    set_tag_attribute_values={"a": {"target": "_blank"}, "input": {"type": "checkbox", "disabled": "disabled"}},
    url_schemes={"http", "https", "mailto"},
    url_relative="deny",
    link_rel="noopener noreferrer nofollow",
    filter_style_properties={"text-align"},
)


def sanitize_html(raw: str) -> str:
    """The allow-list pass every piece of HTML built from model or user text goes through."""
    return _cleaner.clean(raw)


def render_markdown(text: str) -> str:
    """Safe HTML for a message's markdown text (NUL and lone surrogates shown as U+FFFD, as
    they are stored: cleantext)."""
    return sanitize_html(_md.render(storable(text or "")))
