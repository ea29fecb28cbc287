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
