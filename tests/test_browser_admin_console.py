"""The admin console in a real browser: editing a system prompt keeps versions with a readable
diff, the Preview button shows unsaved text as it would be sent, and a conversation reads as a
read-only transcript. Screenshots go to var/test-artifacts/."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.livestack import LiveStack

ARTIFACTS = Path(__file__).resolve().parent.parent / "var" / "test-artifacts"
ADMIN_PASSWORD = "admin-console-pass-123"


@pytest.fixture(scope="module")
def live_stack(fake_anthropic):
    """The stack with a superuser `root` to sign in to the admin."""
    stack = LiveStack(anthropic_url=fake_anthropic.url).start()
    stack.manage("shell", "-c", (
        "from django.contrib.auth.models import User; "
        f"User.objects.create_superuser('root', 'root@example.com', {ADMIN_PASSWORD!r})"
    ))
    yield stack
    stack.stop()


@pytest.fixture
def page(browser: Browser, live_stack: LiveStack):
    context = browser.new_context(base_url=live_stack.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto("/admin/login/")
    page.fill("#id_username", "root")
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("input[type=submit]")
    expect(page).to_have_url(re.compile(r"/admin/$"))
    yield page
    context.close()


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"admin-console-{name}.png"), full_page=True)


def _save(page: Page) -> None:
    page.click("input[name=_continue]")
    expect(page.locator(".messagelist .success")).to_be_visible()


def test_prompt_edits_keep_versions_with_an_escaped_diff_and_a_preview(page: Page):
    page.goto("/admin/conversations/systemprompt/add/")
    page.fill("#id_name", "Browser helper")
    page.fill("#id_text", "Be helpful.\nUse short answers.")
    _save(page)
    page.fill("#id_text", "Be helpful.\n<b>Always</b> cite sources.")
    _save(page)
    _save(page)  # unchanged: no version
    expect(page.locator("body")).to_contain_text("v2 by root")

    # Preview of unsaved text: opens in a new tab, saves nothing.
    page.fill("#id_text", "Draft only & <i>not saved</i>")
    with page.context.expect_page() as tab:
        page.click("#prompt-preview-button")
    preview = tab.value
    preview.wait_for_load_state()
    expect(preview.locator("#prompt-preview-text")).to_have_text("Draft only & <i>not saved</i>")
    expect(preview.locator("#prompt-preview-cache")).to_contain_text("Too short to be cached")
    sent = json.loads(preview.locator("#prompt-preview-json").inner_text())
    assert sent == [{"type": "text", "text": "Draft only & <i>not saved</i>"}]
    _shot(preview, "preview")
    preview.close()

    page.get_by_role("link", name="Versions").first.click()
    expect(page.locator(".version")).to_have_count(2)
    current = page.locator("#v2")
    expect(current.locator("tr.add td").nth(1)).to_have_text("<b>Always</b> cite sources.")
    expect(current.locator("tr.del td").nth(1)).to_have_text("Use short answers.")
    assert current.locator("tr.add b").count() == 0  # shown as text, never as markup
    background = current.locator("tr.add td").nth(1).evaluate("el => getComputedStyle(el).backgroundColor")
    assert background not in ("rgba(0, 0, 0, 0)", "transparent")
    _shot(page, "versions")


def test_conversation_reads_as_a_read_only_transcript(page: Page, live_stack: LiveStack):
    cid = live_stack.manage("shell", "-c", (
        "from django.contrib.auth.models import User\n"
        "from conversations import services\n"
        "from conversations.models import Message\n"
        "u = User.objects.create_user('reader', password='reader-pass-123')\n"
        "c = services.conversation_create(owner=u)\n"
        "q = Message.objects.create(conversation=c, role='user', content='What is <script>1</script>?')\n"
        "a = Message.objects.create(conversation=c, parent=q, role='assistant', content='A number.', input_tokens=12, output_tokens=3)\n"
        "c.current_leaf = a\n"
        "c.title = 'Transcript'\n"
        "c.save()\n"
        "print(c.pk)\n"
    )).strip().splitlines()[-1]
    page.goto(f"/admin/conversations/conversation/{cid}/change/")
    expect(page.locator("h1")).to_contain_text("View conversation")
    expect(page.locator("#messages-group")).to_contain_text("What is <script>1</script>?")
    expect(page.locator("#messages-group")).to_contain_text("A number.")
    assert page.locator("textarea, input[name=_save]").count() == 0
    _shot(page, "conversation")
