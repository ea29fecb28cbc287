"""Personal API tokens on the account page: shown once, stored hashed, revocable."""

from __future__ import annotations

import hashlib
import re

import pytest
from django.urls import reverse

from accounts import tokens
from accounts.models import ApiToken

pytestmark = pytest.mark.django_db

SECRET = re.compile(r'id="api-token-secret">(chs_[A-Za-z0-9_-]+)<')


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


def test_token_page_requires_login(client):
    response = client.get(reverse("api_tokens"))
    assert response.status_code == 302 and reverse("login") in response["Location"]


def test_created_token_is_shown_once_and_stored_only_hashed(alice_client, alice):
    response = alice_client.post(reverse("api_tokens"), {"name": "  laptop   terminal "})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    secret = SECRET.search(response.content.decode()).group(1)
    token = ApiToken.objects.get(user=alice)
    assert token.name == "laptop terminal"
    assert token.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret.startswith(token.prefix) and len(token.prefix) < len(secret)
    assert secret not in str(ApiToken.objects.filter(pk=token.pk).values().first())
    page = alice_client.get(reverse("api_tokens")).content.decode()
    assert secret not in page and token.prefix in page and "laptop terminal" in page
    assert tokens.api_token_authenticate(secret=secret) == token


def test_blank_name_is_refused(alice_client, alice):
    response = alice_client.post(reverse("api_tokens"), {"name": "   "})
    assert response.status_code == 200 and not ApiToken.objects.filter(user=alice).exists()
    assert not SECRET.search(response.content.decode())


def test_active_tokens_are_capped(alice_client, alice):
    for n in range(tokens.MAX_ACTIVE_TOKENS):
        tokens.api_token_create(user=alice, name=f"t{n}")
    response = alice_client.post(reverse("api_tokens"), {"name": "one too many"})
    assert "Revoke one" in response.content.decode()
    assert ApiToken.objects.filter(user=alice).count() == tokens.MAX_ACTIVE_TOKENS


def test_revoked_token_no_longer_authenticates_and_stays_listed(alice_client, alice):
    token, secret = tokens.api_token_create(user=alice, name="script")
    response = alice_client.post(reverse("api_token_revoke", args=[token.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("api_tokens")
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert tokens.api_token_authenticate(secret=secret) is None
    assert "Revoked" in alice_client.get(reverse("api_tokens")).content.decode()
    assert alice_client.post(reverse("api_token_revoke", args=[token.pk])).status_code == 404


def test_other_user_cannot_revoke_or_see_a_token(client, alice, bob):
    token, secret = tokens.api_token_create(user=alice, name="alice's script")
    client.force_login(bob)
    assert client.post(reverse("api_token_revoke", args=[token.pk])).status_code == 404
    assert "alice&#x27;s script" not in client.get(reverse("api_tokens")).content.decode()
    token.refresh_from_db()
    assert token.revoked_at is None


def test_revoke_needs_post(alice_client, alice):
    token, _ = tokens.api_token_create(user=alice, name="script")
    assert alice_client.get(reverse("api_token_revoke", args=[token.pk])).status_code == 405


def test_malformed_secrets_are_not_looked_up(alice, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert tokens.api_token_authenticate(secret="not-ours") is None
        assert tokens.api_token_authenticate(secret="chs_" + "x" * 500) is None


def test_admin_lists_tokens_without_secrets_and_revokes_them(admin_client, alice):
    token, secret = tokens.api_token_create(user=alice, name="ci")
    page = admin_client.get(reverse("admin:accounts_apitoken_changelist")).content.decode()
    assert token.prefix in page and secret not in page and token.token_hash not in page
    admin_client.post(reverse("admin:accounts_apitoken_changelist"), {"action": "revoke", "_selected_action": [token.pk]})
    token.refresh_from_db()
    assert token.revoked_at is not None
    detail = admin_client.get(reverse("admin:accounts_apitoken_change", args=[token.pk])).content.decode()
    assert token.token_hash not in detail
