"""Model output becomes HTML only through the sanitising renderer."""

from html.parser import HTMLParser

import pytest

from conversations.rendering import render_markdown

PAYLOADS = [
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    "[click](javascript:alert(1))",
    '<a href="javascript:alert(1)">x</a>',
    '<svg onload="alert(1)"></svg>',
    "<iframe src=https://evil.example></iframe>",
    '[x](https://ok.example "t" onclick="alert(1)")',
    "![tracker](https://evil.example/pixel.png)",
]


class _Elements(HTMLParser):
    """The elements and attributes a browser would build from the HTML."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend((name, value or "") for name, value in attrs)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_script_payloads_render_inert(payload):
    parsed = _Elements(render_markdown(f"Before\n\n{payload}\n\nAfter"))
    assert not {"script", "img", "svg", "iframe"} & set(parsed.tags)
    assert not [name for name, _ in parsed.attrs if name.startswith("on")]
    assert not [value for name, value in parsed.attrs if name in ("href", "src") and not value.startswith(("http", "mailto"))]


def test_raw_html_in_markdown_is_shown_as_text():
    html = render_markdown("<b>bold?</b>")
    assert "&lt;b&gt;bold?&lt;/b&gt;" in html


def test_markdown_features_survive_sanitising():
    html = render_markdown("# Title\n\n- a\n- b\n\n1. one\n\n**strong** `code`\n\n```python\nprint('hi')\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n[link](https://example.com)")
    for fragment in ("<h1>Title</h1>", "<ul>", "<ol>", "<strong>strong</strong>", "<code>code</code>", '<pre><code class="language-python">', "<table>", 'href="https://example.com"', 'rel="noopener noreferrer nofollow"'):
        assert fragment in html
    assert '<span class="nb">print</span>' in html  # Pygments highlighting


def test_unknown_code_language_is_escaped_not_highlighted():
    html = render_markdown("```nosuchlang\n<b>x</b>\n```")
    assert "&lt;b&gt;x&lt;/b&gt;" in html


def test_math_delimiters_become_tex_text_for_the_browser_to_typeset():
    html = render_markdown("Inline $e^{i\\pi}+1=0$ and \\(a<b\\).\n\n$$\n\\int_0^1 x\\,dx\n$$\n\n\\[\n\\frac{a}{b}\n\\]\n\nMid-paragraph $$x^2$$ display.")
    assert '<span class="math math-inline">e^{i\\pi}+1=0</span>' in html
    assert '<span class="math math-inline">a&lt;b</span>' in html
    assert '<div class="math math-display">\\int_0^1 x\\,dx</div>' in html
    assert '<div class="math math-display">\\frac{a}{b}</div>' in html
    assert '<span class="math math-display">x^2</span>' in html  # a span: a div would break the <p>


def test_dollar_amounts_and_escaped_brackets_are_not_math():
    html = render_markdown("It costs $5 and $10, or $ 3 $. See \\[1\\] and `$x$`.")
    assert "math" not in html
    assert "It costs $5 and $10, or $ 3 $. See [1] and <code>$x$</code>." in html


def test_images_become_links_so_nothing_loads_without_a_click():
    html = render_markdown("![a chart](https://example.com/chart.png) ![x](data:image/png;base64,AAAA)")
    assert "<img" not in html
    assert '<a class="md-image-link" href="https://example.com/chart.png" target="_blank" rel="noopener noreferrer nofollow">🖼 a chart</a>' in html
    assert '<a class="md-image-link" target="_blank" rel="noopener noreferrer nofollow">🖼 x</a>' in html


def test_task_lists_alerts_and_bare_urls():
    html = render_markdown("- [x] done\n- [ ] todo\n\n> [!WARNING]\n> careful\n\nsee https://example.com/a?b=1 or www.example.org, not setup.py")
    assert '<input class="task-list-item-checkbox" type="checkbox" checked="" disabled="disabled">' in html
    assert '<div class="markdown-alert markdown-alert-warning">' in html and '<p class="markdown-alert-title">Warning</p>' in html
    assert '<a href="https://example.com/a?b=1" target="_blank" rel="noopener noreferrer nofollow">' in html
    assert '<a href="http://www.example.org" target="_blank"' in html
    assert "setup.py</p>" in html


def test_relative_and_unknown_scheme_links_lose_their_href():
    html = render_markdown("[a](/accounts/logout/) [b](#top) [c](//evil.example) [d](ftp://x.example)")
    assert "href" not in html


def test_autolinks_render_as_the_plugin_alone_renders_them():
    # The plugin's rules are guarded (they were quadratic in paragraphs full of colons or of
    # protocol names); the guards must not change what they link.
    from markdown_it import MarkdownIt
    from mdit_py_plugins.gfm_autolink import gfm_autolink_plugin

    from conversations.rendering import guard_autolinks

    plain = MarkdownIt("commonmark").use(gfm_autolink_plugin)
    guarded = MarkdownIt("commonmark").use(gfm_autolink_plugin)
    guard_autolinks(guarded)
    samples = [
        "https://example.com/a?b=1 and http://x.example:8080/p",
        "at 10:30 see https://a.example, ratio 3:1, see:https://not.example then mailto:someone@example.com.",
        "xmpp:user@chat.example and xhttp://no.example and HTTP://upper.example",
        "(http://paren.example) *https://em.example* `http://code.example` [t](https://l.example)",
        "key: value\nnext: http://line.example\n\nhttps:\n\nmailto: a@b.c",
        "a" * 50 + ":" + "https" + "://tail.example" + " x:" * 40,
        "a long run of words before it, longer than sixty-four characters in all, http://after.example/p?q=1 ok",
        "mailto:first.last+tag@example.co.uk, xmpp:me@chat.example/res, mailto:.bad@x and mailto: a@b.c and mailto:@x.y",
        "http:a https:b mailto:c www.d.example x@y.example user@host.example www. http:// https://",
        "**bold https://b.example** _it www.i.example_ ~~del mail@s.example~~ ![img](https://i.example/x.png)",
    ]
    for text in samples:
        assert guarded.render(text) == plain.render(text), text
    assert render_markdown(samples[1]).count("<a href=") == 2


def test_a_paragraph_full_of_colons_still_links_its_urls():
    text = "At 10:30 the ratio was 3:1, note: ok. " * 400 + "Then https://end.example/x."
    html = render_markdown(text)
    assert html.count("<a href=") == 1 and 'href="https://end.example/x"' in html


# --- rendering time grows with the text, not with its square (issue 13, item 6) ---------------

PATHOLOGICAL = ["http:a ", "https:a ", "mailto:a ", "xmpp:a@b.c/", "http:", "mailto:", "http://a ", "mailto:a@b.co ",
                "x@y ", "www.a ", "a@", "a: b ", "*http://a* ", "<http:a> ", "[http:a](", "`http:a` "]


def _render_seconds(text: str) -> float:
    """The least process CPU time of three renderings (CPU time: other processes don't count)."""
    import time

    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        render_markdown(text)
        best = min(best, time.process_time() - started)
    return best


@pytest.mark.parametrize("unit", PATHOLOGICAL)
def test_rendering_time_is_linear_in_runs_of_protocol_names_colons_and_at_signs(unit):
    """Four times the text takes about four times the work; quadratic rendering takes about
    sixteen. The bound (eight) is generous for noise and still far from quadratic."""
    def text(size: int) -> str:
        return (unit * (size // len(unit) + 1))[:size]

    small, large = _render_seconds(text(20_000)), _render_seconds(text(80_000))
    assert large < 8 * max(small, 0.002), f"{unit!r}: 20k characters {small:.3f} s, 80k {large:.3f} s"


def test_a_long_url_is_linked_up_to_the_autolink_window():
    from conversations.rendering import _AUTOLINK_WINDOW

    url = "https://example.com/" + "a" * (_AUTOLINK_WINDOW * 2)
    html = render_markdown(f"see {url} end")
    assert html.count("<a href=") == 1
    assert "end</p>" in html and "a" * _AUTOLINK_WINDOW in html  # nothing of the text is lost
