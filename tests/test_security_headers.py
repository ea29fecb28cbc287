"""HTTPS settings from the environment and a strict Content-Security-Policy (issue 13, item 8).
The browser tests run under the policy and fail on any violation (tests/conftest.py)."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import reverse

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.django_db


def _policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {d.split()[0]: d.split()[1:] for d in (part.strip() for part in header.split(";")) if d}


@pytest.mark.parametrize("name", ["login", "signup", "password_reset"])
def test_pages_carry_a_policy_that_allows_no_inline_script(client, name):
    policy = _policy(client.get(reverse(name)))
    assert policy["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval', no other host
    assert policy["default-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"] and policy["base-uri"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"] and policy["form-action"] == ["'self'"]


def test_the_logged_in_pages_and_the_admin_carry_it_too(client, admin_user, alice):
    from conversations import services

    conversation = services.conversation_create(owner=alice)
    client.force_login(alice)
    for url in (reverse("chat"), reverse("conversation_detail", args=[conversation.pk]), reverse("usage")):
        assert _policy(client.get(url))["script-src"] == ["'self'"], url
    client.force_login(admin_user)
    assert _policy(client.get(reverse("admin:index")))["script-src"] == ["'self'"]


_SCRIPT = re.compile(r"<script\b([^>]*)>", re.IGNORECASE)
_HANDLER = re.compile(r"\son[a-z]+\s*=", re.IGNORECASE)


def test_no_template_has_an_inline_script_style_sheet_or_event_handler():
    """Data for scripts goes in json_script blocks (type application/json: not run); style
    sheets are files (style attributes are allowed)."""
    problems = []
    for path in sorted((REPO / "templates").rglob("*.html")):
        text = path.read_text()
        for match in _SCRIPT.finditer(text):
            attrs = match.group(1)
            if "src=" not in attrs and "application/json" not in attrs:
                problems.append(f"{path.relative_to(REPO)}: inline <script{attrs}>")
        problems += [f"{path.relative_to(REPO)}: inline handler {m.group(0).strip()}" for m in _HANDLER.finditer(text)]
        if re.search(r"<style\b", text, re.IGNORECASE):
            problems.append(f"{path.relative_to(REPO)}: a <style> element")
    assert not problems, "\n".join(problems)


def _check_deploy(**env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "REDIS_URL", "DATABASE_URL")}
    base.update(DJANGO_SETTINGS_MODULE="chatsite.settings", DEBUG="0", SECRET_KEY=secrets.token_urlsafe(60),
                ALLOWED_HOSTS="chat.example.com", SECURE_COOKIES="1", **env)
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=REPO, env=base, capture_output=True, text=True, timeout=120)
    return result.stdout + result.stderr


def test_https_redirect_and_hsts_can_be_switched_on_from_the_environment():
    out = _check_deploy(SECURE_SSL_REDIRECT="1", SECURE_HSTS_SECONDS="31536000")
    assert "security.W004" not in out and "security.W008" not in out, out
    out = _check_deploy(SECURE_SSL_REDIRECT="1", SECURE_HSTS_SECONDS="31536000", SECURE_HSTS_INCLUDE_SUBDOMAINS="1", SECURE_HSTS_PRELOAD="1")
    assert "System check identified no issues" in out, out


def test_the_redirect_and_hsts_headers(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600
    response = client.get(reverse("login"))
    assert response.status_code == 301 and response["Location"].startswith("https://")
    response = client.get(reverse("login"), secure=True)
    assert response.status_code == 200 and response["Strict-Transport-Security"] == "max-age=3600"
