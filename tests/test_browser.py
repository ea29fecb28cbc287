"""End-to-end tests in a real browser against Chatsite running as in production.

The app runs in its own processes (daphne, see tests/livestack.py) with its own fresh database,
and talks to the project's fake Anthropic server; Chromium drives it through Playwright's sync
API. No pytest-django database is used here.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.livestack import LiveStack, catalog_cache_expired
from tests.browser import unique

SCREENSHOT = "/tmp/chatsite-e2e.png"

# The last reply of the thread: its classes, raw text (textContent) and, once rendered, the
# visible text without the code blocks' "Copy" buttons.
LAST_REPLY_JS = """() => {
  const replies = document.querySelectorAll('#thread .msg-assistant');
  if (!replies.length) return null;
  const article = replies[replies.length - 1];
  const body = article.querySelector('.msg-body');
  const buttons = [...body.querySelectorAll('.copy-code')];
  buttons.forEach((b) => (b.style.display = 'none'));
  const visible = body.innerText;
  buttons.forEach((b) => (b.style.display = ''));
  return {cls: article.className, raw: body.textContent, text: visible};
}"""


def norm(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def live_server_url(live_stack) -> str:
    return live_stack.url


@pytest.fixture
def page(request, browser: Browser, live_stack: LiveStack, live_server_url: str):
    context = browser.new_context(base_url=live_server_url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    console: list[str] = []
    page_errors: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    failed_before = request.session.testsfailed
    yield page
    if request.session.testsfailed > failed_before:
        # Shown under "Captured stdout teardown" of the failing test.
        shot = f"/tmp/chatsite-e2e-fail-{request.node.name}.png"
        try:
            page.screenshot(path=shot, full_page=True)
            print(f"screenshot: {shot}")
        except Exception as exc:  # the page may be gone
            print(f"no screenshot: {exc}")
        print("browser console:\n" + "\n".join(console))
        print("server log (tail):\n" + live_stack.log_text(8000))
    context.close()
    assert not page_errors, f"uncaught JavaScript errors: {page_errors}"


# ---------------------------------------------------------------------------------- helpers


def sign_up(page: Page) -> str:
    """A new account through the sign-up form; ends on the new-chat page."""
    username = unique("e2e-")
    page.goto("/accounts/signup/")
    fill_signup(page, username)
    expect(page).to_have_url(re.compile(r"/chat/$"))
    return username


def fill_signup(page: Page, username: str) -> None:
    password = "Vx7-" + uuid.uuid4().hex
    page.fill("#id_username", username)
    page.fill("#id_email", f"{username}@example.com")
    page.fill("#id_password1", password)
    page.fill("#id_password2", password)
    page.get_by_role("button", name="Create account").click()


def start_chat(page: Page, message: str) -> None:
    """On the new-chat page: type the first message, press Enter, land on the conversation."""
    # Its Enter-sends script runs at the end of the page: a loaded page, not just its URL.
    page.wait_for_load_state("load")
    box = page.locator("#composer-input")
    box.fill(message)
    box.press("Enter")
    page.wait_for_url(re.compile(r"/chat/\d+/$"))


def last_reply(page: Page) -> dict | None:
    return page.evaluate(LAST_REPLY_JS)


def wait_for_reply_end(page: Page, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = last_reply(page)
        if state and "status-streaming" not in state["cls"]:
            return state
        page.wait_for_timeout(50)
    raise AssertionError(f"the reply did not finish within {timeout} s: {last_reply(page)}")


# ---------------------------------------------------------------------------------- tests


def test_signup_chat_stream_and_reload(page: Page, fake_anthropic):
    token = unique("tok")
    heading = f"Notes on {token}"
    para1 = (
        "This reply arrives a few words at a time over the websocket so the browser can show "
        "it while the model is still writing. The next block is a tiny Python example that "
        "greets whoever is named in the call."
    )
    code = 'def greet(name):\n    return "Hello, " + name\n\nprint(greet("world"))'
    para2 = "That is all there is to it, and the whole answer should survive a reload of the page."
    reply_text = f"# {heading}\n\n{para1}\n\n```python\n{code}\n```\n\n{para2}\n"
    expected_visible = norm(" ".join([heading, para1, code, para2]))
    assert 55 <= len(reply_text.split()) <= 80
    fake_anthropic.script({"text": reply_text, "tps": 25}, match=token)

    # Signed out: / leads to the log-in page, which links to sign-up.
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.locator(".auth-links").get_by_role("link", name="Sign up").click()
    expect(page).to_have_url(re.compile(r"/accounts/signup/$"))
    username = unique("e2e-")
    fill_signup(page, username)

    # The new-chat page, signed in, with the offline badge (no API key configured).
    expect(page).to_have_url(re.compile(r"/chat/$"))
    expect(page.locator(".topnav .who")).to_have_text(username)
    expect(page.locator(".badge-offline")).to_be_visible()
    expect(page.locator(".badge-offline")).to_have_text("Offline demo model")

    message = f"Please write a short note about {token} with a heading and a tiny Python example for me"
    assert len(message) > 60  # long enough for the title to be truncated
    start_chat(page, message)

    # Streamed text shows up while the reply is still being written, always a prefix of it.
    saw_partial = False
    deadline = time.monotonic() + 20
    state = None
    while time.monotonic() < deadline:
        state = last_reply(page)
        if state is not None:
            if "status-streaming" not in state["cls"]:
                break
            raw = state["raw"]
            assert reply_text.startswith(raw), f"streamed text is not a prefix of the reply: {raw!r}"
            if 0 < len(raw) < len(reply_text):
                saw_partial = True
        page.wait_for_timeout(50)
    assert saw_partial, "no partial text was seen while the reply was streaming"
    assert state is not None and "status-complete" in state["cls"], state

    reply = page.locator("#thread .msg-assistant").last
    expect(reply).to_have_class(re.compile(r"\bstatus-complete\b"))
    body = reply.locator(".msg-body")
    expect(body.locator("h1, h2").first).to_have_text(heading)
    expect(body.locator("pre code")).to_have_count(1)
    expect(body.locator("pre code")).to_contain_text('return "Hello, " + name')
    expect(body.locator(".copy-code")).to_have_count(1)
    expect(body.locator(".copy-code")).to_have_text("Copy")
    expect(body.locator(".copy-code")).to_be_visible()
    assert norm(state["text"]) == expected_visible

    # After a reload (server-rendered this time) everything is still there.
    page.reload()
    expect(page.locator("#thread .msg-user .msg-body")).to_have_text(message)
    reply = page.locator("#thread .msg-assistant").last
    expect(reply).to_have_class(re.compile(r"\bstatus-complete\b"))
    expect(reply.locator(".msg-body h1, .msg-body h2").first).to_have_text(heading)
    expect(reply.locator(".msg-body pre code")).to_have_count(1)
    expect(reply.locator(".msg-body .copy-code")).to_have_text("Copy")
    state = last_reply(page)
    assert norm(state["text"]) == expected_visible

    item = page.locator("#conv-list .conv-item.current")
    expect(item).to_have_count(1)
    title = item.locator(".conv-title").inner_text()
    assert title.endswith("…") and len(title) <= 61, title
    assert token in title and message.startswith(title[:-1].rstrip()), title
    expect(page.locator("#conversation-title")).to_have_text(title)

    page.screenshot(path=SCREENSHOT, full_page=True)


def test_reload_mid_stream_resumes_without_gap_or_duplicate(page: Page, fake_anthropic, live_stack: LiveStack):
    token = unique("tok")
    words = [f"w{i:03d}" for i in range(1, 151)]
    reply_text = " ".join(words)
    fake_anthropic.script({"text": reply_text, "tps": 40}, match=token)
    sign_up(page)
    start_chat(page, f"Count for me please {token}")

    # Let some text arrive (and be checkpointed, every 0.5 s), then reload mid-stream.
    deadline = time.monotonic() + 15
    while True:
        state = last_reply(page)
        if state and "status-streaming" in state["cls"] and len(state["raw"].split()) >= 40:
            break
        assert state is None or "status-streaming" in state["cls"], f"finished before the reload: {state}"
        assert time.monotonic() < deadline, f"no streamed text: {state}"
        page.wait_for_timeout(50)
    page.reload()

    # The text so far is there at once, and the reply keeps streaming from where it was.
    state = last_reply(page)
    assert state is not None and "status-streaming" in state["cls"], state
    first = state["raw"]
    assert first.strip(), "the reloaded page shows none of the text written so far"
    assert reply_text.startswith(first), first
    grew = False
    deadline = time.monotonic() + 20
    while True:
        state = last_reply(page)
        if "status-streaming" not in state["cls"]:
            break
        assert reply_text.startswith(state["raw"]), f"gap or duplicate after reload: {state['raw']!r}"
        grew = grew or len(state["raw"]) > len(first)
        assert time.monotonic() < deadline, "the reply did not finish"
        page.wait_for_timeout(50)
    assert grew, "the reply did not keep streaming after the reload"
    assert "status-complete" in state["cls"], state

    shown = norm(state["text"])
    stored_content, stored_status = live_stack.stored_replies()[-1]
    assert stored_status == "complete"
    assert shown == norm(reply_text) == norm(stored_content)
    assert shown.split() == words  # each word exactly once, in order


def test_model_output_with_script_payloads_renders_inert(page: Page, fake_anthropic):
    token = unique("tok")
    payloads = [
        "<script>window.__xss = 1</script>",
        '<img src=x onerror="window.__xss=2">',
        "[click](javascript:window.__xss=3)",
        '<a href="javascript:alert(1)">a</a>',
    ]
    reply_text = f"Payloads for {token}:\n\n" + "\n\n".join(payloads) + "\n"
    fake_anthropic.script({"text": reply_text, "tps": 100}, match=token)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    sign_up(page)
    start_chat(page, f"Show me the payloads {token}")

    def assert_inert() -> None:
        reply = page.locator("#thread .msg-assistant").last
        expect(reply).to_have_class(re.compile(r"\bstatus-complete\b"))
        assert page.evaluate("window.__xss") is None
        assert page.locator("#thread script").count() == 0
        assert page.locator("#thread img").count() == 0
        assert page.locator("#thread [onerror]").count() == 0
        assert page.locator('a[href^="javascript:" i]').count() == 0
        assert page.locator("#thread [href*='javascript' i], #thread [src]").count() == 0
        body = reply.locator(".msg-body")
        for payload in payloads:
            expect(body).to_contain_text(payload)  # shown as text, not markup
        assert not dialogs, dialogs

    state = wait_for_reply_end(page)
    assert "status-complete" in state["cls"], state
    assert_inert()
    page.reload()
    assert_inert()


def test_enter_sends_and_shift_enter_adds_newline(page: Page, fake_anthropic):
    token = unique("tok")
    fake_anthropic.script({"text": f"First answer {token}.", "tps": 0}, match=token + "-one")
    fake_anthropic.script({"text": f"Second answer {token}.", "tps": 0}, match=token + "-two")
    sign_up(page)

    # The new-chat page: Shift+Enter is a newline, nothing is sent.
    box = page.locator("#composer-input")
    box.fill(f"first line {token}-one")
    box.press("Shift+Enter")
    box.press_sequentially("second line")
    assert box.input_value() == f"first line {token}-one\nsecond line"
    page.wait_for_timeout(300)
    expect(page).to_have_url(re.compile(r"/chat/$"))
    # Enter sends.
    box.press("Enter")
    page.wait_for_url(re.compile(r"/chat/\d+/$"))
    users = page.locator("#thread .msg-user .msg-body")
    expect(users).to_have_count(1)
    assert users.first.inner_text() == f"first line {token}-one\nsecond line"
    assert "status-complete" in wait_for_reply_end(page)["cls"]
    expect(page.locator("#composer-input")).to_have_value("")

    # The conversation page's composer behaves the same.
    box = page.locator("#composer-input")
    box.fill(f"third line {token}-two")
    box.press("Shift+Enter")
    box.press_sequentially("fourth line")
    assert box.input_value() == f"third line {token}-two\nfourth line"
    page.wait_for_timeout(300)
    expect(users).to_have_count(1)
    box.press("Enter")
    expect(users).to_have_count(2)
    assert users.last.inner_text() == f"third line {token}-two\nfourth line"
    expect(box).to_have_value("")
    expect(page.locator("#thread .msg-assistant")).to_have_count(2)
    state = wait_for_reply_end(page)
    assert "status-complete" in state["cls"] and norm(state["text"]) == f"Second answer {token}.", state


def test_two_tabs_stream_live_and_stop_from_either_then_continue(page: Page, fake_anthropic, live_stack: LiveStack):
    token = unique("tabs")
    words = " ".join(f"t{i:03d}" for i in range(300))
    fake_anthropic.script({"text": words, "tps": 30}, match=token)
    sign_up(page)
    start_chat(page, f"Count for me {token}")
    expect(page.locator("#stop-button")).to_be_visible()
    expect(page.locator("#send-button")).to_be_hidden()

    # The same person in a second tab sees the reply streaming live.
    other = page.context.new_page()
    other.goto(page.url)
    expect(other.locator("#thread .msg-assistant.status-streaming")).to_have_count(1)
    expect(other.locator("#thread .msg-assistant .msg-body")).to_contain_text("t020")

    other.locator("#stop-button").click()  # stop from the tab that did not send
    for tab in (page, other):
        reply = tab.locator("#thread .msg-assistant").last
        expect(reply).to_have_class(re.compile(r"\bstatus-stopped\b"))
        expect(reply.locator(".msg-note")).to_have_text("Stopped.")
        expect(tab.locator("#stop-button")).to_be_hidden()
        expect(tab.locator("#send-button")).to_be_visible()
    stopped_text, status = live_stack.stored_replies()[-1]
    assert status == "stopped" and words.startswith(stopped_text) and len(stopped_text) < len(words)
    assert norm(page.locator("#thread .msg-assistant .msg-body").last.inner_text()) == norm(stopped_text)

    # Continue picks up after the kept text, in both tabs.
    fake_anthropic.script({"text": " and that is the end.", "tps": 30, "match_in": "all_user_turns"}, match=token)
    page.locator("#thread .msg-assistant").last.get_by_role("button", name="Continue").click()
    for tab in (page, other):
        expect(tab.locator("#thread .msg-assistant").last).to_have_class(re.compile(r"\bstatus-complete\b"))
    final_text, status = live_stack.stored_replies()[-1]
    assert status == "complete" and final_text == stopped_text + " and that is the end."
    for tab in (page, other):
        assert norm(tab.locator("#thread .msg-assistant .msg-body").last.inner_text()) == norm(final_text)
    other.close()


def test_reply_finishing_in_another_conversation_is_announced(page: Page, fake_anthropic):
    first, second = unique("first"), unique("second")
    fake_anthropic.script({"text": "quick answer"}, match=first)
    fake_anthropic.script({"text": " ".join(["slow"] * 60), "tps": 30}, match=second)
    sign_up(page)
    start_chat(page, f"one {first}")
    expect(page.locator("#thread .msg-assistant").last).to_have_class(re.compile(r"\bstatus-complete\b"))
    first_url = page.url

    other = page.context.new_page()
    other.goto("/chat/")
    start_chat(other, f"two {second}")
    expect(other.locator("#thread .msg-assistant.status-streaming")).to_have_count(1)
    page.goto(first_url)  # the sidebar now lists the second conversation as generating
    expect(page.locator(".conv-item.generating")).to_have_count(1)
    notice = page.locator("#notice")
    expect(notice).to_contain_text("Reply ready in", timeout=20_000)
    expect(notice.get_by_role("link")).to_have_attribute("href", re.compile(r"/chat/\d+/$"))
    expect(page.locator(".conv-item.generating")).to_have_count(0)
    other.close()


def test_conversation_started_in_another_tab_appears_in_the_sidebar(page: Page, fake_anthropic):
    token = unique("side")
    fake_anthropic.script({"text": " ".join(["word"] * 40), "tps": 30}, match=token)
    sign_up(page)
    start_chat(page, f"first chat {token}-a")
    expect(page.locator(".conv-item")).to_have_count(1)
    other = page.context.new_page()
    other.goto("/chat/")
    start_chat(other, f"second chat {token}")
    item = page.locator(".conv-item").first  # the new one, on top, marked as generating
    expect(item).to_contain_text("second chat")
    expect(item).to_have_class(re.compile(r"\bgenerating\b"))
    expect(page.locator(".conv-item")).to_have_count(2)
    expect(item).not_to_have_class(re.compile(r"\bgenerating\b"), timeout=20_000)
    other.close()


def test_server_crash_mid_reply_page_reconnects_and_keeps_the_text(browser: Browser, fake_anthropic):
    """The server is killed while writing; the page says it is offline, reconnects by itself
    when the server is back, and shows the kept text as interrupted with Continue and Retry."""
    stack = LiveStack(anthropic_url=fake_anthropic.url).start()
    context = browser.new_context(base_url=stack.url)
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        token = unique("crash")
        words = " ".join(f"k{i:03d}" for i in range(400))
        fake_anthropic.script({"text": words, "tps": 40}, match=token)
        sign_up(page)
        start_chat(page, f"long one {token}")
        body = page.locator("#thread .msg-assistant .msg-body").last
        expect(body).to_contain_text("k040")
        page.wait_for_timeout(700)  # past a checkpoint (0.5 s in the live stack)

        stack.proc.kill()  # the page's socket drops with the process
        expect(page.locator("#conn-status")).to_contain_text("Offline", timeout=10_000)
        shown = body.inner_text()
        assert words.startswith(norm(shown)), "what was shown stays on screen"

        stack.restart_after_crash()
        reply = page.locator("#thread .msg-assistant").last
        expect(reply).to_have_class(re.compile(r"\bstatus-interrupted\b"), timeout=20_000)
        expect(page.locator("#conn-status")).to_have_text("")
        stored, status = stack.stored_replies()[-1]
        assert status == "interrupted" and len(stored) > 0 and words.startswith(stored)
        assert norm(reply.locator(".msg-body").inner_text()) == norm(stored)
        expect(reply.locator(".msg-error")).to_contain_text("text so far is kept")
        expect(reply.get_by_role("button", name="Continue")).to_be_visible()
        expect(reply.get_by_role("button", name="Retry")).to_be_visible()
    finally:
        context.close()
        stack.stop()


# ------------------------------------------------------------- costs, titles, memory, budget

USAGE_LINE = re.compile(r"^[\d,]+ in · [\d,]+ out( · cache read [\d,]+)?( · (cache )?wrote [\d,]+)? · \$\d[\d,]*\.\d+$")


def conversation_id(page: Page) -> int:
    return int(re.search(r"/chat/(\d+)/$", page.url).group(1))


def test_reply_cost_and_cache_use_show_live_and_match_after_reload(page: Page, fake_anthropic):
    token = unique("cost")
    # A first message long enough to be cached, so the second reply reads the cache.
    long_message = f"Background for {token}: " + " ".join(f"fact{i:04d} is worth keeping in mind." for i in range(400))
    fake_anthropic.script({"text": "Noted, thank you.", "tps": 200}, match=token)
    sign_up(page)
    total = page.locator("#conv-cost")
    start_chat(page, long_message)
    wait_for_reply_end(page)
    usage = page.locator("#thread .msg-assistant .msg-usage")
    expect(usage).to_have_count(1)  # rendered from the end frame, without a reload
    expect(usage).to_have_text(USAGE_LINE)
    first_line = norm(usage.inner_text())
    expect(total).not_to_have_text("$0.00")
    expect(total).to_have_text(usage.locator(".msg-usage-cost").inner_text())  # the only cost so far

    fake_anthropic.script({"text": "Second answer.", "tps": 200}, match=token + "-two")
    box = page.locator("#composer-input")
    box.fill(f"And now? {token}-two")
    box.press("Enter")
    expect(page.locator("#thread .msg-assistant")).to_have_count(2)
    wait_for_reply_end(page)
    second = page.locator("#thread .msg-assistant .msg-usage").nth(1)
    expect(second).to_have_text(USAGE_LINE)
    expect(second).to_have_class(re.compile(r"\bcache-read\b"))  # marked: this reply read the cache
    expect(second.locator(".msg-usage-read")).to_be_visible()
    assert "Cache read:" in second.get_attribute("title") and "at the prices of the time" in second.get_attribute("title")
    live = {"lines": [first_line, norm(second.inner_text())], "total": total.inner_text(), "rate": page.locator("#conv-cache-rate").inner_text()}
    assert re.fullmatch(r"[1-9]\d?%|100%", live["rate"]), live

    # The server's figures on reload are what the page computed live.
    page.reload()
    lines = [norm(t) for t in page.locator("#thread .msg-assistant .msg-usage").all_inner_texts()]
    assert lines == live["lines"]
    expect(page.locator("#conv-cost")).to_have_text(live["total"])
    expect(page.locator("#conv-cache-rate")).to_have_text(live["rate"])


def test_title_and_summary_made_in_the_background_appear_without_reload(page: Page, fake_anthropic, live_stack: LiveStack):
    token = unique("bg")
    title = f"Tomato notes {token[-6:]}"
    fake_anthropic.script({"text": "First answer.", "tps": 200}, match=token + "-one")
    fake_anthropic.script({"text": f'"{title}"'}, match=token + "-one")  # the title task's call
    fake_anthropic.script({"text": "Second answer.", "tps": 200}, match=token + "-two")
    sign_up(page)
    start_chat(page, f"How do I grow tomatoes? {token}-one")
    wait_for_reply_end(page)
    cid = conversation_id(page)
    item = page.locator(f'#conv-list [data-conversation-id="{cid}"] .conv-title')
    # (The breakdown in the tooltip: a title call costs less than the total's last shown digit.)
    cost_before = page.locator("#conv-cost").get_attribute("title")

    # The title task runs as a Celery worker would run it; its event reaches the page through
    # the channel layer.
    live_stack.manage("shell", "-c", f"from conversations.tasks import title_conversation; title_conversation.apply(args=[{cid}])")
    expect(page.locator("#conversation-title")).to_have_text(title)
    expect(item).to_have_text(title)
    expect(page).to_have_title(f"{title} · Chatsite")
    expect(page.locator("#conv-cost")).not_to_have_attribute("title", cost_before)  # the title's call is counted
    assert "titles $0.00," not in page.locator("#conv-cost").get_attribute("title") + ","

    box = page.locator("#composer-input")
    box.fill(f"And in pots? {token}-two")
    box.press("Enter")
    wait_for_reply_end(page)
    expect(page.locator("#thread .msg-assistant")).to_have_count(2)

    # A summary up to the first reply, announced as the compaction task announces it.
    live_stack.manage("shell", "-c", (
        "from asgiref.sync import async_to_sync\n"
        "from channels.layers import get_channel_layer\n"
        "from conversations import groups\n"
        "from conversations.models import Conversation, Message, Summary\n"
        f"c = Conversation.objects.get(pk={cid})\n"
        "upto = Message.objects.filter(conversation=c, role='assistant').order_by('id').first()\n"
        "Summary.objects.create(conversation=c, upto=upto, model='m', covered_messages=2,\n"
        "    text='The person **grows tomatoes**. <script>window.__xss = 1</script><img src=x onerror=\"window.__xss=2\">')\n"
        "async_to_sync(get_channel_layer().group_send)(groups.user_group(c.owner_id),\n"
        "    {'type': 'chat.conversation_update', 'conversation_id': c.pk, 'summarised_upto': upto.pk})\n"
    ))

    def assert_marker() -> None:
        marker = page.locator("#thread .memory-marker")
        expect(marker).to_have_count(1)
        expect(marker).to_contain_text("Claude's memory of the messages above was summarised here")
        placed = page.evaluate("""() => {
          const m = document.querySelector('#thread .memory-marker');
          return [m.previousElementSibling.dataset.role, m.nextElementSibling.dataset.role,
                  [...document.querySelectorAll('#thread .msg-assistant')].indexOf(m.previousElementSibling)];
        }""")
        assert placed == ["assistant", "user", 0], placed
        text = marker.locator(".memory-summary .markdown")
        expect(text).to_be_hidden()
        marker.locator("summary").click()
        expect(text.locator("strong")).to_have_text("grows tomatoes")
        assert page.evaluate("window.__xss") is None
        assert page.locator("#thread script, #thread img").count() == 0

    assert_marker()
    page.reload()
    assert_marker()
    expect(page.locator("#conversation-title")).to_have_text(title)


def test_send_over_the_monthly_budget_keeps_the_text_and_links_to_usage(page: Page, live_stack: LiveStack):
    username = sign_up(page)
    live_stack.manage("shell", "-c", (
        "from django.contrib.auth import get_user_model\n"
        "from accounts.models import SpendLimit\n"
        f"SpendLimit.objects.create(user=get_user_model().objects.get(username='{username}'), monthly_limit=0)\n"
    ))
    catalog_cache_expired()
    message = f"Anything at all {unique('budget')}"
    start_chat(page, message)
    notice = page.locator("#notice")
    expect(notice).to_contain_text("monthly budget")
    expect(notice).to_contain_text("resets on")
    expect(notice.get_by_role("link", name="See your usage")).to_have_attribute("href", "/usage/")
    box = page.locator("#composer-input")
    expect(box).to_have_value(message)
    expect(box).to_be_enabled()
    expect(page.locator("#thread .msg")).to_have_count(0)


def test_claude_busy_is_said_under_the_reply_until_its_text_comes(page: Page, fake_anthropic):
    token = unique("busy")
    fake_anthropic.script([{"status": 529, "retry_after_ms": 2500}, {"text": "Here after the wait.", "tps": 20}], match=token)
    sign_up(page)
    start_chat(page, f"Anyone there? {token}")
    notice = page.locator("#thread .msg-assistant .msg-notice")
    expect(notice).to_contain_text("Claude is busy (overloaded); retrying in 3 s")
    expect(notice).to_have_attribute("role", "status")
    state = wait_for_reply_end(page)
    assert "status-complete" in state["cls"] and norm(state["text"]) == "Here after the wait."
    expect(notice).to_have_count(0)
