"""In a real browser: the XSS corpus never runs, and export, import, share and copy work.

Chatsite runs as in production (tests/livestack.py) against the fake Anthropic server. Every
page gets an init script that replaces alert/confirm/prompt/print and traps `window.__xss`
before any of our code runs, so a payload that executed anywhere — in the thread, the sidebar,
the share page, an imported conversation — leaves a trace. Screenshots go to var/test-artifacts/.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from playwright.sync_api import Browser, Page, expect

from tests.livestack import REPO_ROOT
from tests.browser import unique
from tests.test_browser import (  # noqa: F401 - fixtures used by name
    live_server_url,
    page,
    sign_up,
    start_chat,
    wait_for_reply_end,
)
from tests.xss_corpus import TITLE_PAYLOAD, corpus_document

ARTIFACTS = REPO_ROOT / "var" / "test-artifacts"

TRAPS = """
(() => {
  const fired = [];
  Object.defineProperty(window, "__fired", { value: fired });
  for (const name of ["alert", "confirm", "prompt", "print"]) {
    const hook = (...args) => { fired.push(`${name}(${args.join(",")})`); return name === "confirm" ? false : null; };
    Object.defineProperty(window, name, { value: hook, writable: false, configurable: false });
  }
  Object.defineProperty(window, "__xss", { get: () => undefined, set: (v) => fired.push(`__xss=${v}`), configurable: false });
})();
"""

# Scriptable things a browser built inside the places where people's and Claude's text shows.
# KaTeX's own output (inside .katex) legitimately holds <math> and <svg>.
DOM_PROBLEMS = """() => {
  const bad = [];
  const roots = document.querySelectorAll("#thread, #sidebar, .shared-thread, #conversation-title, #shared-title");
  const scriptable = ["script", "iframe", "frame", "object", "embed", "applet", "style", "img", "base", "meta", "link", "video", "audio", "source", "portal"];
  for (const root of roots) {
    for (const el of [root, ...root.querySelectorAll("*")]) {
      const tag = el.tagName.toLowerCase();
      if (scriptable.includes(tag)) bad.push(`<${tag}>`);
      if ((tag === "svg" || tag === "math") && !el.closest(".katex")) bad.push(`<${tag}> outside KaTeX`);
      for (const a of el.attributes) {
        if (a.name.startsWith("on")) bad.push(`<${tag} ${a.name}>`);
        const v = a.value.replace(/[\\u0000-\\u0020\\u200b-\\u200f\\u202a-\\u202e\\ufeff]/g, "").toLowerCase();
        if (["href", "src", "action", "formaction", "xlink:href", "data", "srcdoc"].includes(a.name) && /^(javascript|vbscript|data):/.test(v)) bad.push(`<${tag} ${a.name}=${a.value}>`);
      }
    }
  }
  return bad;
}"""


def artifact(name: str) -> str:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return str(ARTIFACTS / name)


def assert_nothing_ran(page: Page) -> None:
    page.wait_for_timeout(300)  # let late handlers (onerror of a failed load, autofocus) fire
    assert page.evaluate("window.__fired.slice()") == []
    assert page.evaluate(DOM_PROBLEMS) == []
    assert page.evaluate("typeof window.__xss") == "undefined"


def hover_everything(page: Page, selector: str) -> None:
    """Move the mouse over every element a handler could sit on (mouseover payloads)."""
    boxes = page.evaluate(
        """(sel) => [...document.querySelectorAll(sel)].slice(0, 400).map((e) => e.getBoundingClientRect())
            .filter((r) => r.width && r.height && r.top >= 0 && r.top < innerHeight).map((r) => [r.x + r.width / 2, r.y + r.height / 2])""",
        selector,
    )
    for x, y in boxes:
        page.mouse.move(x, y)


def clipboard(page: Page) -> str:
    return page.evaluate("navigator.clipboard.readText()")


# ---------------------------------------------------------------------------------- tests


def test_corpus_never_runs_in_thread_sidebar_share_page_or_import(page: Page, browser: Browser, fake_anthropic, live_server_url: str):
    token = unique("xss")
    reply_text = corpus_document()
    message = f"{TITLE_PAYLOAD}\n\n{corpus_document()}\n{token}"
    fake_anthropic.script({"text": reply_text, "tps": 0}, match=token)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.add_init_script(TRAPS)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    username = sign_up(page)

    # User input and model output, live (streamed, then the server's sanitised HTML).
    start_chat(page, message)
    assert "status-complete" in wait_for_reply_end(page)["cls"]
    reply = page.locator("#thread .msg-assistant").last
    expect(reply.locator(".msg-body")).to_contain_text("<script>alert(1)</script>")
    expect(page.locator("#thread .msg-user .msg-body").first).to_contain_text(TITLE_PAYLOAD)
    hover_everything(page, "#thread .msg-body *")
    assert_nothing_ran(page)

    # Reloaded: server-rendered thread, and the sidebar title made from the message.
    page.reload()
    expect(page.locator("#thread .msg-assistant .msg-body").last).to_contain_text("<svg onload=alert(1)>")
    title = page.locator("#conv-list .conv-item.current .conv-title")
    expect(title).to_contain_text("<img src=x onerror=alert(1)>")
    expect(page).to_have_title(re.compile(re.escape("<img src=x onerror=alert(1)>")))
    hover_everything(page, "#thread .msg-body *, #conv-list *")
    assert_nothing_ran(page)
    page.screenshot(path=artifact("xss-conversation.png"), full_page=True)

    # Copy under the reply gives its markdown as Claude wrote it.
    reply = page.locator("#thread .msg-assistant").last
    reply.hover()
    reply.locator(".msg-copy").click()
    expect(reply.locator(".msg-copy")).to_have_text("Copied")
    assert clipboard(page) == reply_text

    # Share: a link to a snapshot, copied with one click.
    page.locator("#share-menu > summary").click()
    page.locator("#share-create").click()
    page.wait_for_url(re.compile(r"\?share=open$"))
    share_url = page.locator("#share-links .share-url").first.input_value()
    assert re.fullmatch(re.escape(live_server_url) + r"/chat/shared/[A-Za-z0-9_-]{32}/", share_url), share_url
    page.locator("#share-links .share-copy").first.click()
    assert clipboard(page) == share_url

    # Logged out, in a fresh browser context: the snapshot, inert, not indexed, no owner.
    visitor = browser.new_context(viewport={"width": 1100, "height": 900})
    try:
        shared = visitor.new_page()
        shared.add_init_script(TRAPS)
        errors: list[str] = []
        shared.on("pageerror", lambda e: errors.append(str(e)))
        response = shared.goto(share_url)
        assert response.status == 200 and response.headers["x-robots-tag"] == "noindex, nofollow"
        expect(shared.locator('meta[name="robots"]')).to_have_attribute("content", "noindex, nofollow")
        expect(shared.locator("#shared-title")).to_contain_text(TITLE_PAYLOAD)
        expect(shared.locator(".shared-thread .msg-assistant .msg-body")).to_contain_text("<script>alert(1)</script>")
        assert username not in shared.content()
        assert shared.locator(".topnav").get_by_role("link", name="Log in").count() == 1
        hover_everything(shared, ".shared-thread .msg-body *")
        assert_nothing_ran(shared)
        shared.screenshot(path=artifact("xss-share-page.png"), full_page=True)
        assert not errors, errors
    finally:
        visitor.close()

    # Export as JSON from the header menu, then import it on the new-chat page.
    page.goto(page.url.split("?")[0])
    page.locator("#export-menu > summary").click()
    with page.expect_download() as download:
        page.locator("#export-menu").get_by_role("link", name="JSON (.json)").click()
    path = Path(download.value.path())
    data = json.loads(path.read_text())
    assert [m["content"] for m in data["messages"]] == [message, reply_text]
    expect(page.locator("#export-menu")).to_have_attribute("open", "")  # still open after a download
    with page.expect_download() as download:
        page.locator("#export-menu").get_by_role("link", name="Markdown (.md)").click()
    assert reply_text.strip() in Path(download.value.path()).read_text()

    original_url = page.url
    page.goto("/chat/")
    page.locator("#import-chat > summary").click()
    page.locator("#import-file").set_input_files(str(path))
    page.locator("#import-form").get_by_role("button", name="Import").click()
    page.wait_for_url(re.compile(r"/chat/\d+/$"))
    assert page.url != original_url
    expect(page.locator(".flash")).to_contain_text("Imported")
    expect(page.locator("#thread .msg-assistant .msg-body")).to_contain_text("<script>alert(1)</script>")
    hover_everything(page, "#thread .msg-body *")
    assert_nothing_ran(page)
    page.screenshot(path=artifact("xss-imported.png"), full_page=True)

    # Revoked: the link is gone for everyone.
    page.goto(original_url + "?share=open")
    page.locator("#share-links .share-revoke").first.click()
    page.wait_for_url(re.compile(r"\?share=open$"))
    expect(page.locator("#share-links .share-none")).to_have_text("No active links.")
    visitor = browser.new_context()
    try:
        assert visitor.new_page().goto(share_url).status == 404
    finally:
        visitor.close()
    assert not dialogs, dialogs


def test_math_code_and_copy_buttons_in_the_browser(page: Page, fake_anthropic):
    token = unique("math")
    code = 'def area(r: float) -> float:\n    return 3.14159 * r ** 2'
    reply_text = (
        f"Euler: $e^{{i\\pi}} + 1 = 0$, and the area {token}:\n\n"
        "$$\n\\int_0^1 x^2\\,dx = \\frac{1}{3}\n$$\n\n"
        "Also \\(a^2 + b^2 = c^2\\). A bad one stays readable: $\\frac{1}{$ costs $5 and $10.\n\n"
        f"```python\n{code}\n```\n\n"
        "| col | val |\n|:--|--:|\n| a | 1 |\n\n"
        "- [x] done\n- [ ] todo\n\n"
        "> [!TIP]\n> Read the docs at https://docs.python.org/3/.\n"
    )
    fake_anthropic.script({"text": reply_text, "tps": 0}, match=token)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.add_init_script(TRAPS)
    sign_up(page)
    start_chat(page, f"Some math please {token}")
    wait_for_reply_end(page)

    def check() -> None:
        body = page.locator("#thread .msg-assistant .msg-body").last
        expect(body.locator(".math.math-rendered")).to_have_count(3)
        expect(body.locator(".katex")).to_have_count(3)
        expect(body.locator(".math-display .katex-display")).to_have_count(1)
        expect(body.locator(".math-error")).to_have_count(1)
        expect(body.locator(".math-error")).to_have_text("\\frac{1}{")
        expect(body).to_contain_text("costs $5 and $10.")
        wrap = body.locator(".code-wrap")
        expect(wrap).to_have_attribute("data-lang", "python")
        expect(wrap.locator(".copy-code")).to_have_text("Copy")
        expect(body.locator("table td")).to_have_count(2)
        expect(body.locator("input[type=checkbox][disabled]")).to_have_count(2)
        expect(body.locator(".markdown-alert-tip")).to_contain_text("Read the docs")
        link = body.get_by_role("link", name="https://docs.python.org/3/")
        expect(link).to_have_attribute("target", "_blank")
        expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")
        assert_nothing_ran(page)

    check()  # as the reply finished, without a reload
    page.reload()
    check()
    body = page.locator("#thread .msg-assistant .msg-body").last
    body.locator(".copy-code").click()
    expect(body.locator(".copy-code")).to_have_text("Copied")
    assert clipboard(page) == code + "\n"
    user = page.locator("#thread .msg-user").first
    user.hover()
    user.locator(".msg-copy").click()
    assert clipboard(page) == f"Some math please {token}"
    page.screenshot(path=artifact("rendering-math-code.png"), full_page=True)
