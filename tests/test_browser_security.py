"""Security behaviour seen from Chromium against the production-like stack (issue 13)."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import unique, watched_page
from tests.livestack import LiveStack

PASSWORD = "Sec-" + uuid.uuid4().hex


@pytest.fixture
def page(request, browser: Browser, live_stack: LiveStack):
    yield from watched_page(request, browser, live_stack, shot_prefix="security")


def _user_with_conversation(live_stack: LiveStack) -> tuple[str, int]:
    username = unique("sec-")
    out = live_stack.manage("shell", "-c", (
        "from django.contrib.auth import get_user_model\n"
        "from conversations import services\n"
        f"user = get_user_model().objects.create_user(username='{username}', password='{PASSWORD}')\n"
        "print('conversation', services.conversation_create(owner=user).pk)\n"
    ))
    return username, int(re.search(r"conversation (\d+)", out).group(1))


def _log_in(page: Page, username: str) -> None:
    page.goto("/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.locator("main").get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/chat/$"))


def test_a_tab_logged_out_elsewhere_stops_and_offers_to_log_in_again(page: Page, live_stack: LiveStack):
    username, conversation_id = _user_with_conversation(live_stack)
    _log_in(page, username)
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.goto(f"/chat/{conversation_id}/")
    page.locator("#composer-input").fill("a draft that must survive")
    for _ in range(100):
        if sockets:
            break
        page.wait_for_timeout(50)
    assert len(sockets) == 1

    other = page.context.new_page()  # another tab of the same browser logs out
    other.goto("/chat/")
    other.locator(".topnav").get_by_role("button", name="Log out").click()
    expect(other).to_have_url(re.compile(r"/accounts/login/"))

    expect(page.locator("#notice")).to_contain_text("Your session has ended.")
    expect(page.get_by_role("link", name="Log in again")).to_have_attribute("href", f"/accounts/login/?next=%2Fchat%2F{conversation_id}%2F")
    page.wait_for_timeout(3000)  # the client would have reconnected by now
    assert len(sockets) == 1, f"the tab reconnected after its session ended: {sockets}"
    expect(page.locator("#composer-input")).to_have_value("a draft that must survive")
