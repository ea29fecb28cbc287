"""The workspace in a real browser: sidebar groups and menu (rename inline, pin, archive, delete
with confirmation and undo), more conversations as the list scrolls, and search from the
sidebar landing on the highlighted message.

Chatsite runs as in production (tests/livestack.py) against the fake Anthropic server; Chromium
drives it through Playwright. Screenshots go to var/test-artifacts/workspace-*.png.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import axe_playwright_python
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.livestack import REPO_ROOT, LiveStack
from tests.browser import unique, watched_page

ARTIFACTS = REPO_ROOT / "var" / "test-artifacts"
AXE_JS = Path(axe_playwright_python.__file__).with_name("axe.min.js")
UNDO_SECONDS = 4


@pytest.fixture(scope="module")
def live_stack(fake_anthropic):
    stack = LiveStack(anthropic_url=fake_anthropic.url, extra_env={"CHATSITE_UNDO_DELETE_SECONDS": str(UNDO_SECONDS)}).start()
    yield stack
    stack.stop()


@pytest.fixture
def page(request, browser: Browser, live_stack: LiveStack):
    yield from watched_page(request, browser, live_stack, shot_prefix="workspace", timezone_id="Europe/Berlin")


def shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"workspace-{name}.png"
    try:
        page.screenshot(path=str(path), full_page=False)
    except Exception as exc:  # the page may be gone
        print(f"no screenshot {path}: {exc}")
    return path


def axe_serious(page: Page) -> list[str]:
    if not page.evaluate("() => Boolean(window.axe)"):
        # Evaluated, not added as a <script> tag: the site's Content-Security-Policy allows
        # no inline script (and the browser tests fail on any violation of it).
        page.evaluate(AXE_JS.read_text())
    result = page.evaluate("async () => await window.axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {node['target']}"
        for v in result["violations"] if v["impact"] in ("serious", "critical") for node in v["nodes"]
    ]


def sign_up(page: Page) -> str:
    username = unique("e2e-")
    password = "Vx7-" + uuid.uuid4().hex
    page.goto("/accounts/signup/")
    page.fill("#id_username", username)
    page.fill("#id_email", f"{username}@example.com")
    page.fill("#id_password1", password)
    page.fill("#id_password2", password)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/chat/$"))
    return username


def start_chat(page: Page, message: str) -> int:
    """From the new-chat page: send the first message, wait for the reply to finish."""
    page.goto("/chat/")
    box = page.locator("#composer-input")
    box.fill(message)
    box.press("Enter")
    page.wait_for_url(re.compile(r"/chat/\d+/$"))
    reply_done(page)
    return int(re.search(r"/chat/(\d+)/", page.url).group(1))


def send(page: Page, message: str) -> None:
    box = page.locator("#composer-input")
    box.fill(message)
    box.press("Enter")
    expect(box).to_have_value("")
    reply_done(page)


def reply_done(page: Page) -> None:
    expect(page.locator("#thread .msg-assistant").last).to_have_class(re.compile(r"\bstatus-complete\b"), timeout=20_000)


def item(page: Page, title: str) -> Locator:
    return page.locator("#conv-list .conv-item", has=page.locator(".conv-title", has_text=title))


def menu(page: Page, title: str) -> Locator:
    """Open the conversation's menu; return its panel."""
    row = item(page, title)
    row.hover()
    row.locator("summary.conv-menu-button").click()
    panel = row.locator(".conv-menu-panel")
    expect(panel).to_be_visible()
    return panel


def group_of(page: Page, title: str) -> str:
    return item(page, title).evaluate("(li) => li.closest('.conv-group').dataset.group")


def titles(page: Page) -> list[str]:
    return page.locator("#conv-list .conv-title").all_inner_texts()


def test_rename_pin_delete_with_undo_and_archive(page: Page, fake_anthropic, live_stack: LiveStack):
    sign_up(page)
    tokens = [unique("ws") for _ in range(3)]
    for t in tokens:
        fake_anthropic.script({"text": f"Answer for {t}."}, match=t)
    first = start_chat(page, f"First chat {tokens[0]}")
    start_chat(page, f"Second chat {tokens[1]}")
    third = start_chat(page, f"Third chat {tokens[2]}")
    expect(page.locator("#conv-list .conv-item")).to_have_count(3)
    assert [t.split()[0] for t in titles(page)] == ["Third", "Second", "First"]
    assert group_of(page, "First chat") == "today"
    expect(page.locator('.conv-group[data-group="today"] .conv-group-label')).to_have_text("Today")
    # The browser's time zone went to the server too.
    assert any(c["name"] == "chatsite_tz" and c["value"] == "Europe/Berlin" for c in page.context.cookies())

    # Rename inline: Enter saves; the header of the open conversation follows.
    page.goto(f"/chat/{third}/")
    menu(page, "Third chat").get_by_role("link", name="Rename").click()
    field = item(page, "Third chat").locator("input.conv-rename-input")
    expect(field).to_be_focused()
    field.fill("Trip to Lisbon")
    field.press("Enter")
    expect(item(page, "Trip to Lisbon")).to_have_count(1)
    expect(page.locator("#conversation-title")).to_have_text("Trip to Lisbon")
    # Escape cancels.
    menu(page, "Second chat").get_by_role("link", name="Rename").click()
    item(page, "Second chat").locator("input.conv-rename-input").fill("never saved")
    page.keyboard.press("Escape")
    expect(item(page, "Second chat")).to_have_count(1)
    shot(page, "renamed")

    # Pin the oldest: it goes on top, under "Pinned", and stays there after a reload.
    menu(page, "First chat").get_by_role("button", name="Pin").click()
    expect(page.locator('.conv-group[data-group="pinned"] .conv-title')).to_have_text([re.compile("^First chat")])
    assert titles(page)[0].startswith("First chat")
    page.reload()
    expect(page.locator('.conv-group[data-group="pinned"] .conv-title')).to_have_text([re.compile("^First chat")])
    expect(page.locator("#conv-list .conv-group-label").first).to_have_text("Pinned")
    shot(page, "pinned")

    # Delete asks first; Cancel keeps it.
    menu(page, "Second chat").get_by_role("button", name="Delete").click()
    dialog = page.locator("#confirm-delete")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Second chat")
    dialog.get_by_role("button", name="Cancel").click()
    expect(item(page, "Second chat")).to_have_count(1)
    # Delete, then Undo within the window: back where it was.
    menu(page, "Second chat").get_by_role("button", name="Delete").click()
    dialog.get_by_role("button", name="Delete").click()
    expect(item(page, "Second chat")).to_have_count(0)
    toast = page.locator("#undo-toast")
    expect(toast).to_be_visible()
    expect(toast).to_contain_text("Deleted “Second chat")
    shot(page, "undo-toast")
    toast.get_by_role("button", name="Undo").click()
    expect(item(page, "Second chat")).to_have_count(1)
    expect(toast).to_be_hidden()
    assert [t.split()[0] for t in titles(page)] == ["First", "Trip", "Second"]
    # Delete for good: the offer goes away by itself, and so does the conversation.
    second_url = item(page, "Second chat").locator("a").first.get_attribute("href")
    menu(page, "Second chat").get_by_role("button", name="Delete").click()
    dialog.get_by_role("button", name="Delete").click()
    expect(toast).to_be_visible()
    expect(toast).to_be_hidden(timeout=(UNDO_SECONDS + 3) * 1000)
    page.reload()
    expect(item(page, "Second chat")).to_have_count(0)
    assert page.goto(second_url).status == 404

    # Archive: out of the list, on the Archived page, back with Unarchive.
    page.goto(f"/chat/{first}/")
    menu(page, "Trip to Lisbon").get_by_role("button", name="Archive").click()
    expect(item(page, "Trip to Lisbon")).to_have_count(0)
    expect(page.locator("#undo-toast")).to_contain_text("Archived")
    page.get_by_role("link", name="Archived conversations").click()
    expect(page).to_have_url(re.compile(r"/chat/archived/$"))
    row = page.locator(".archived-item", has_text="Trip to Lisbon")
    expect(row).to_have_count(1)
    assert axe_serious(page) == []
    shot(page, "archived")
    # Opened from there it says so, and can come back from its own header.
    row.get_by_role("link", name="Trip to Lisbon").click()
    expect(page).to_have_url(re.compile(rf"/chat/{third}/$"))
    note = page.locator(".chat-header .archived-note")
    expect(note).to_contain_text("Archived")
    expect(item(page, "Trip to Lisbon")).to_have_count(0)
    note.get_by_role("button", name="Unarchive").click()
    expect(note).to_have_count(0)
    expect(item(page, "Trip to Lisbon")).to_have_count(1)
    page.goto("/chat/archived/")
    expect(page.locator(".archived-empty")).to_have_text("Nothing archived.")
    expect(item(page, "Trip to Lisbon")).to_have_count(1)

    # Unarchive from the Archived page too.
    menu(page, "Trip to Lisbon").get_by_role("button", name="Archive").click()
    expect(item(page, "Trip to Lisbon")).to_have_count(0)  # the server has it archived
    page.reload()
    row = page.locator(".archived-item", has_text="Trip to Lisbon")
    row.get_by_role("button", name="Unarchive").click()
    expect(row).to_have_count(0)
    expect(page.locator(".archived-empty")).to_have_text("Nothing archived.")
    expect(item(page, "Trip to Lisbon")).to_have_count(1)


def test_deleting_the_open_conversation_goes_to_a_new_chat_and_undo_comes_back(page: Page, fake_anthropic):
    sign_up(page)
    token = unique("open")
    fake_anthropic.script({"text": "Something to keep."}, match=token)
    cid = start_chat(page, f"Keep me {token}")
    menu(page, "Keep me").get_by_role("button", name="Delete").click()
    page.locator("#confirm-delete").get_by_role("button", name="Delete").click()
    page.wait_for_url(re.compile(r"/chat/$"))
    toast = page.locator("#undo-toast")
    expect(toast).to_be_visible()
    expect(toast).to_contain_text("Deleted “Keep me")
    toast.get_by_role("button", name="Undo").click()
    page.wait_for_url(re.compile(rf"/chat/{cid}/$"))
    expect(page.locator("#thread .msg-assistant .msg-body")).to_have_text("Something to keep.")


def test_search_from_the_sidebar_lands_on_the_highlighted_message(page: Page, fake_anthropic):
    sign_up(page)
    word = "quokka" + uuid.uuid4().hex[:8]  # one word, letters and digits
    token, filler = unique("srch"), unique("fill")
    fake_anthropic.script({"text": f"The animal you mean is the {word}, a small marsupial."}, match=token)
    filler_text = "\n\n".join(f"Paragraph {i}: " + "lots of words to make this reply long " * 12 for i in range(12))
    fake_anthropic.script([{"text": filler_text, "tps": 2000}, {"text": filler_text, "tps": 2000}], match=filler)
    cid = start_chat(page, f"Which animal smiles? {token}")
    send(page, f"Tell me more {filler}")
    send(page, f"And more {filler}")
    target = page.locator("#thread .msg-assistant").first
    target_id = target.get_attribute("data-message-id")
    expect(target).not_to_be_in_viewport()  # the thread is scrolled to its end

    page.goto("/chat/")
    box = page.locator("#sidebar-search-input")
    box.fill(word[:-2])  # part of the word is enough
    results = page.locator("#sidebar-search-results")
    expect(results).to_be_visible()
    expect(page.locator("#conv-list")).to_be_hidden()
    hit = results.locator(f'a.search-hit[data-message-id="{target_id}"]')
    expect(hit).to_have_count(1)
    expect(hit.locator("mark")).to_have_text(word[:-2])
    shot(page, "sidebar-search")
    hit.click()
    page.wait_for_url(re.compile(rf"/chat/{cid}/#m{target_id}$"))
    landed = page.locator(f"#m{target_id}")
    expect(landed).to_have_class(re.compile(r"\bsearch-target\b"))
    expect(landed).to_be_in_viewport()
    expect(landed).to_contain_text(word)
    shot(page, "landed")

    # Enter in the box opens the full search page; its results link to the message too.
    page.locator("#sidebar-search-input").fill(word)
    page.locator("#sidebar-search-input").press("Enter")
    expect(page).to_have_url(re.compile(r"/chat/search/\?q="))
    result = page.locator(".search-results .search-hit")
    expect(result).to_have_count(1)
    expect(result.locator("mark")).to_have_text(word)
    expect(result).to_have_attribute("href", f"/chat/{cid}/#m{target_id}")
    assert axe_serious(page) == []
    shot(page, "search-page")
    # Escape in the sidebar box gives the list back.
    page.locator("#sidebar-search-input").fill("zzz-nothing")
    expect(page.locator("#sidebar-search-results")).to_contain_text("No matches.")
    page.locator("#sidebar-search-input").press("Escape")
    expect(page.locator("#conv-list")).to_be_visible()


def test_more_conversations_load_as_the_sidebar_scrolls(page: Page, live_stack: LiveStack):
    username = sign_up(page)
    live_stack.manage("shell", "-c", (
        "from django.contrib.auth import get_user_model\n"
        "from conversations.models import Conversation\n"
        f"u = get_user_model().objects.get(username='{username}')\n"
        "Conversation.objects.bulk_create([Conversation(owner=u, model='m', title=f'Bulk {i:03d}') for i in range(120)])\n"
    ))
    page.goto("/chat/")
    conv = page.locator("#conv-list .conv-item")
    expect(conv).to_have_count(50)
    page.locator("#conv-list").evaluate("(el) => { el.scrollTop = el.scrollHeight; }")
    expect(conv).to_have_count(100)
    page.locator("#conv-list").evaluate("(el) => { el.scrollTop = el.scrollHeight; }")
    expect(conv).to_have_count(120)
    expect(page.locator("#conv-more")).to_have_count(0)
    names = titles(page)
    assert names == [f"Bulk {i:03d}" for i in range(119, -1, -1)]  # newest first, none twice
    assert axe_serious(page) == []
    shot(page, "scrolled")
