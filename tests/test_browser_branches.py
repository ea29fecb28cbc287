"""Edit and regenerate in a real browser: versions `‹ 2/2 ›`, flipping, editing, other tabs.

Chatsite runs as in production (tests/livestack.py) against the fake Anthropic server; Chromium
drives it through Playwright. Screenshots go to var/test-artifacts/.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.livestack import REPO_ROOT, LiveStack
from tests.browser import unique, watched_page

ARTIFACTS = REPO_ROOT / "var" / "test-artifacts"


@pytest.fixture
def page(request, browser: Browser, live_stack: LiveStack):
    yield from watched_page(request, browser, live_stack, shot_prefix="branches")


def shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"branches-{name}.png"
    try:
        page.screenshot(path=str(path), full_page=True)
    except Exception as exc:  # the page may be gone
        print(f"no screenshot {path}: {exc}")
    return path


def sign_up_and_start(page: Page, message: str) -> None:
    username = unique("e2e-")
    password = "Vx7-" + uuid.uuid4().hex
    page.goto("/accounts/signup/")
    page.fill("#id_username", username)
    page.fill("#id_email", f"{username}@example.com")
    page.fill("#id_password1", password)
    page.fill("#id_password2", password)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/chat/$"))
    page.locator("#composer-input").fill(message)
    page.locator("#send-button").click()  # a plain form post: no race with the page's scripts loading
    page.wait_for_url(re.compile(r"/chat/\d+/$"))


def messages(page: Page) -> Locator:
    return page.locator("#thread > .msg")


def last_reply_is(page: Page, text: str, status: str = "complete") -> None:
    """The thread ends with this reply, finished (not merely all its text arrived: until its
    end frame the page is busy and refuses to switch versions)."""
    reply = page.locator("#thread .msg-assistant").last
    expect(reply.locator(".msg-body")).to_have_text(text)
    expect(reply).to_have_class(re.compile(rf"\bstatus-{status}\b"))
    expect(page.locator("#thread .status-streaming")).to_have_count(0)


def thread_text(page: Page) -> list[str]:
    return [" ".join(t.split()) for t in messages(page).locator(".msg-body").all_inner_texts()]


def test_regenerate_and_edit_make_versions_to_flip_between(page: Page, fake_anthropic, live_stack: LiveStack):
    token, edit_token, follow_token = unique("br"), unique("ed"), unique("fu")
    question = f"Name a colour {token}"
    fake_anthropic.script([{"text": "Red is the first answer."}, {"text": "Blue is the second answer."}], match=token)
    fake_anthropic.script({"text": "Green answers the edited question."}, match=edit_token)
    fake_anthropic.script({"text": "A follow-up on blue."}, match=follow_token)

    sign_up_and_start(page, question)
    last_reply_is(page, "Red is the first answer.")
    reply = page.locator("#thread .msg-assistant").last
    expect(reply.locator(".branch-nav")).to_have_count(0)  # one version: no navigation

    # Retry: a second version, the first one kept one click away.
    reply.get_by_role("button", name="Retry").click()
    last_reply_is(page, "Blue is the second answer.")
    reply = page.locator("#thread .msg-assistant").last
    expect(reply.locator(".branch-pos")).to_have_text("2/2")
    expect(reply.get_by_role("button", name="Next version")).to_be_disabled()
    shot(page, "1-regenerated")

    reply.get_by_role("button", name="Previous version").click()
    reply = page.locator("#thread .msg-assistant").last
    expect(reply.locator(".msg-body")).to_have_text("Red is the first answer.")
    expect(reply.locator(".branch-pos")).to_have_text("1/2")
    expect(reply.get_by_role("button", name="Previous version")).to_be_disabled()
    expect(reply.get_by_role("button", name="Next version")).to_be_focused()  # the keyboard stays on the arrows
    expect(messages(page)).to_have_count(2)
    shot(page, "2-flipped-back")
    reply.get_by_role("button", name="Next version").click()
    last_reply_is(page, "Blue is the second answer.")

    # Edit the question: Escape cancels and changes nothing…
    user = messages(page).first
    user.get_by_role("button", name="Edit").click()
    editor = user.locator(".msg-editor textarea")
    expect(editor).to_be_focused()
    expect(editor).to_have_value(question)
    editor.fill("something else")
    editor.press("Escape")
    expect(user.locator(".msg-editor")).to_have_count(0)
    expect(user.locator(".msg-body")).to_have_text(question)

    # …an empty edit is refused and the editor stays open…
    user.get_by_role("button", name="Edit").click()
    editor = user.locator(".msg-editor textarea")
    editor.fill("   ")
    user.get_by_role("button", name="Save & submit").click()
    expect(page.locator("#notice")).to_have_text("Type a message first.")
    expect(editor).to_be_visible()

    # …and Save & submit makes a new version of the question, answered by Claude.
    edited = f"Name a colour of grass {edit_token}"
    editor.fill(edited)
    shot(page, "2b-editing")
    user.get_by_role("button", name="Save & submit").click()
    user = messages(page).first
    expect(user.locator(".msg-body")).to_have_text(edited)
    expect(user.locator(".branch-pos")).to_have_text("2/2")
    last_reply_is(page, "Green answers the edited question.")
    expect(messages(page)).to_have_count(2)
    shot(page, "3-edited")

    # Flip the question back: the first version comes with the reply last shown under it.
    user.get_by_role("button", name="Previous version").click()
    expect(messages(page).first.locator(".msg-body")).to_have_text(question)
    expect(messages(page).first.locator(".branch-pos")).to_have_text("1/2")
    last_reply_is(page, "Blue is the second answer.")
    expect(page.locator("#thread .msg-assistant").last.locator(".branch-pos")).to_have_text("2/2")
    shot(page, "4-question-flipped-back")

    # Claude gets the branch on screen: the follow-up's history has Blue, not the edit.
    page.locator("#composer-input").fill(f"Why? {follow_token}")
    page.locator("#composer-input").press("Enter")
    last_reply_is(page, "A follow-up on blue.")
    body = [r["body"] for r in fake_anthropic.requests() if follow_token in str(r["body"]["messages"][-1])][-1]
    sent = str(body["messages"])
    assert question in sent and "Blue is the second answer." in sent
    assert edit_token not in sent and "Red is the first answer." not in sent and "Green" not in sent

    # A reload shows the same branch with its versions (server-rendered this time).
    page.reload()
    assert thread_text(page) == [question, "Blue is the second answer.", f"Why? {follow_token}", "A follow-up on blue."]
    expect(messages(page).first.locator(".branch-pos")).to_have_text("1/2")
    expect(messages(page).nth(1).locator(".branch-pos")).to_have_text("2/2")

    # Flipping to the edited question and back again returns to the longer conversation.
    messages(page).first.get_by_role("button", name="Next version").click()
    expect(messages(page)).to_have_count(2)
    last_reply_is(page, "Green answers the edited question.")
    messages(page).first.get_by_role("button", name="Previous version").click()
    expect(messages(page)).to_have_count(4)
    assert thread_text(page)[-1] == "A follow-up on blue."
    shot(page, "5-after-reload")

    # Nothing was deleted along the way: every reply is still stored.
    stored = {content for content, _ in live_stack.stored_replies()}
    assert {"Red is the first answer.", "Blue is the second answer.", "Green answers the edited question.", "A follow-up on blue."} <= stored


def test_another_tab_follows_a_flip_and_an_edit(page: Page, fake_anthropic):
    token, edit_token = unique("tab"), unique("tabed")
    fake_anthropic.script([{"text": "Alpha reply."}, {"text": "Beta reply."}], match=token)
    fake_anthropic.script({"text": "Gamma reply."}, match=edit_token)
    sign_up_and_start(page, f"Pick one {token}")
    last_reply_is(page, "Alpha reply.")
    page.locator("#thread .msg-assistant").last.get_by_role("button", name="Retry").click()
    last_reply_is(page, "Beta reply.")

    other = page.context.new_page()
    other.goto(page.url)
    expect(other.locator("#thread .msg-assistant").last.locator(".branch-pos")).to_have_text("2/2")

    page.locator("#thread .msg-assistant").last.get_by_role("button", name="Previous version").click()
    for tab in (page, other):
        last_reply_is(tab, "Alpha reply.")
        expect(tab.locator("#thread .msg-assistant").last.locator(".branch-pos")).to_have_text("1/2")

    user = page.locator("#thread > .msg").first
    user.get_by_role("button", name="Edit").click()
    user.locator(".msg-editor textarea").fill(f"Pick another {edit_token}")
    user.locator(".msg-editor textarea").press("Enter")
    for tab in (page, other):
        last_reply_is(tab, "Gamma reply.")
        expect(tab.locator("#thread > .msg").first.locator(".branch-pos")).to_have_text("2/2")
        expect(tab.locator("#thread > .msg")).to_have_count(2)
    shot(other, "6-other-tab")
    other.close()


def test_an_edit_the_server_refuses_keeps_its_text_in_the_editor(page: Page, fake_anthropic):
    token, edit_token = unique("busy"), unique("later")
    fake_anthropic.script({"text": " ".join(f"w{i:03d}" for i in range(400)), "tps": 30}, match=token)
    fake_anthropic.script({"text": "Answer to the edit."}, match=edit_token)
    sign_up_and_start(page, f"Write a lot {token}")
    expect(page.locator("#thread .msg-assistant .msg-body")).to_contain_text("w005")

    # While Claude is still answering, the edit is refused (busy) and nothing typed is lost.
    user = messages(page).first
    user.get_by_role("button", name="Edit").click()
    editor = user.locator(".msg-editor textarea")
    edited = f"Write a little\nin two lines {edit_token}"
    editor.fill(edited)
    editor.press("Enter")
    expect(page.locator("#notice")).to_contain_text("still answering")
    expect(editor).to_be_enabled()
    expect(editor).to_have_value(edited)
    shot(page, "7-edit-refused-while-streaming")

    page.locator("#stop-button").click()
    expect(page.locator("#thread .msg-assistant").last).to_have_class(re.compile(r"\bstatus-stopped\b"))
    user.get_by_role("button", name="Save & submit").click()
    last_reply_is(page, "Answer to the edit.")
    expect(page.locator("#notice")).to_be_hidden()
    user = messages(page).first
    expect(user.locator(".msg-body")).to_have_text(edited)
    expect(user.locator(".branch-pos")).to_have_text("2/2")
    # The stopped reply is kept under the first version.
    user.get_by_role("button", name="Previous version").click()
    expect(page.locator("#thread .msg-assistant").last).to_have_class(re.compile(r"\bstatus-stopped\b"))
